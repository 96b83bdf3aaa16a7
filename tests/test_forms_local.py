"""Forms on the real offline STT: the bundled answers are stored exactly, no LLM needed,
and a phone number said in three breaths is one turn while the form expects a phone."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from tests.test_forms_policy import Script
from voicepipe.audio import AudioFormat, chunk_pcm, read_wav
from voicepipe.events import FormProgress, UserTurn
from voicepipe.forms import Field, FieldType, Form, FormStore, SQLiteFormStore, load_form
from voicepipe.pipeline import Pipeline
from voicepipe.policies.base import PolicyContext
from voicepipe.policies.form import FormPolicy
from voicepipe.providers.base import STTEvent, Usage
from voicepipe.providers.fake import FakeLLM, FakeTTS

pytest.importorskip("pocketsphinx", reason="PocketSphinx is not installed (the 'local' extra)")

from voicepipe.providers.local import PocketSphinxSTT

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "examples" / "audio"
INTAKE = load_form(ROOT / "examples" / "forms" / "intake.yaml")


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[FormStore]:
    async with SQLiteFormStore(tmp_path / "forms.db") as opened:
        yield opened


async def heard_turns(pcm: bytes, fmt: AudioFormat) -> list[str]:
    turns: list[str] = []

    async def audio() -> AsyncIterator[bytes]:
        for chunk in chunk_pcm(pcm, fmt, 20):
            yield chunk

    async def emit(event: STTEvent) -> None:
        if isinstance(event, UserTurn):
            turns.append(event.content)

    await PocketSphinxSTT().transcribe(audio(), fmt, emit)
    return turns


async def test_the_bundled_answers_are_stored_exactly_without_an_llm(store: FormStore) -> None:
    # What the README's `voicepipe form run examples/forms/intake.yaml
    # examples/audio/intake_answers.wav` does, turn by turn.
    pcm, fmt = read_wav(SAMPLES / "intake_answers.wav")
    turns = await heard_turns(pcm, fmt)
    assert len(turns) == len(json.loads((SAMPLES / "samples.json").read_text())[
        "intake_answers.wav"
    ])  # fmt: skip
    script = Script()
    ctx = PolicyContext(FakeLLM(script), Usage())
    policy = FormPolicy(INTAKE, store=store, session_id="readme")
    await policy.start(ctx)
    for text in turns:
        await policy.on_user_turn(text, ctx)
    assert policy.done
    assert policy.answers == {"age": 52, "email": "john@gmail.com", "phone": "+14155552681"}
    assert script.extraction_calls == []


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_phone_number_said_in_three_breaths_is_one_turn(store: FormStore) -> None:
    pcm, fmt = read_wav(SAMPLES / "phone_in_three_breaths.wav")
    # PocketSphinx alone ends a turn at each breath...
    assert len(await heard_turns(pcm, fmt)) == 3
    # ...but while the form expects a phone number, the pipeline's end-of-turn
    # detector holds each piece for the rest. Fed at the recording's own pace.
    form = Form(
        name="callback",
        fields=[
            Field(
                name="phone",
                question="Your number?",
                type=FieldType.PHONE,
                region="US",
                confirm=False,
            )
        ],
    )
    script = Script()
    policy = FormPolicy(form, store=store, session_id="breaths")

    async def caller() -> AsyncIterator[bytes]:
        for chunk in chunk_pcm(bytes(fmt.bytes_for(500)) + pcm, fmt, 20):
            await anyio.sleep(0.02)
            yield chunk

    pipeline = Pipeline(
        stt=PocketSphinxSTT(),
        llm=FakeLLM(script),
        tts=FakeTTS(ms_per_char=1),
        policy=policy,
        input_format=fmt,
    )
    turns: list[str] = []
    progress: list[FormProgress] = []
    async with pipeline.run(caller()) as events:
        async for event in events:
            if isinstance(event, UserTurn):
                turns.append(event.content)
            elif isinstance(event, FormProgress):
                progress.append(event)
    assert turns == ["four one five five five five two six eight one"]
    assert [(p.field, p.value) for p in progress] == [("phone", "+14155552681")]
    assert script.extraction_calls == []
