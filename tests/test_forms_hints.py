"""The policy's expectation reaches the STT: a real Pipeline and FormPolicy with an
STT that records the hint it holds when each turn ends (``ExpectingSTT``)."""

from __future__ import annotations

import math
from collections.abc import AsyncIterable

import anyio
import pytest
from anyio.streams.memory import MemoryObjectSendStream

from tests.test_forms_pipeline import FORMAT, user
from tests.test_forms_policy import Script
from voicepipe.audio import AudioFormat
from voicepipe.events import AssistantReply, Event, FormComplete, UserTurn
from voicepipe.forms import Field, FieldType, Form, SQLiteFormStore
from voicepipe.pipeline import Pipeline
from voicepipe.policies.base import Reply
from voicepipe.policies.form import FormPolicy
from voicepipe.providers.base import (
    Expectation,
    ExpectingSTT,
    STTEvent,
    STTHint,
    transcribe,
)
from voicepipe.providers.fake import FakeLLM, FakeSTT, FakeTTS

pytestmark = pytest.mark.anyio

FORM = Form(
    name="meal",
    language="en",
    fields=(
        Field(name="age", question="How old are you?", type=FieldType.INTEGER, min=0, max=130),
        Field(name="email", question="Your e-mail?", type=FieldType.EMAIL),
        Field(
            name="meal",
            question="Vegetarian, chicken or fish?",
            type=FieldType.CHOICE,
            choices=("vegetarian", "chicken", "fish"),
        ),
        Field(
            name="phone",
            question="Your phone?",
            type=FieldType.PHONE,
            region="US",
            confirm=False,
        ),
    ),
)


class HintedFakeSTT(FakeSTT):
    """FakeSTT that records, at the end of each turn, the hint its session holds."""

    def __init__(self, turns: list[str]) -> None:
        super().__init__(turns)
        self.hints: list[STTHint | None] = []

    async def transcribe_expecting(
        self,
        audio: AsyncIterable[bytes],
        format: AudioFormat,
        emit: object,
        expect: Expectation,
    ) -> None:
        async def recording(event: STTEvent) -> None:
            if isinstance(event, UserTurn):
                self.hints.append(expect.hint)
            await emit(event)  # type: ignore[operator]

        await self.transcribe(audio, format, recording)


async def run_form(stt: FakeSTT, turns: int, tmp_path: object) -> list[Event]:
    seen: list[Event] = []
    async with SQLiteFormStore(f"{tmp_path}/hints.db") as store:
        policy = FormPolicy(FORM, store=store, session_id="s1")
        pipeline = Pipeline(
            stt=stt,
            llm=FakeLLM(Script()),
            tts=FakeTTS(ms_per_char=1),
            policy=policy,
            input_format=FORMAT,
        )
        send: MemoryObjectSendStream[None]
        send, heard = anyio.create_memory_object_stream[None](math.inf)
        async with send, heard, pipeline.run(user(turns, heard)) as events:
            async for event in events:
                seen.append(event)
                if isinstance(event, AssistantReply):
                    send.send_nowait(None)
                if isinstance(event, FormComplete):
                    break
        await policy.aclose()
    return seen


async def test_each_turn_is_heard_with_the_hint_of_the_question_before_it(
    tmp_path: object,
) -> None:
    turns = [
        "fifty two",
        "john at gmail dot com",
        "yes",  # the read-back of the e-mail: still an e-mail (a correction may come)
        "the fish please",
        "four one five five five five zero one zero zero",
    ]
    stt = HintedFakeSTT(turns)
    assert isinstance(stt, ExpectingSTT)
    events = await run_form(stt, len(turns), tmp_path)
    assert [e.answers for e in events if isinstance(e, FormComplete)] == [
        {"age": 52, "email": "john@gmail.com", "meal": "fish", "phone": "+14155550100"}
    ]
    email = STTHint("email", (), "en", confirmed=True)
    assert stt.hints == [
        STTHint("number"),
        email,
        email,
        STTHint("choice", ("vegetarian", "chicken", "fish")),
        STTHint("phone", confirmed=False),
    ]


async def test_an_stt_without_the_hook_gets_plain_transcribe() -> None:
    calls: list[str] = []

    class Plain:
        async def transcribe(self, audio: object, format: object, emit: object) -> None:
            calls.append("transcribe")

    class Hinted(Plain):
        async def transcribe_expecting(
            self, audio: object, format: object, emit: object, expect: Expectation
        ) -> None:
            calls.append(f"expecting {expect.hint}")

    async def emit(event: STTEvent) -> None: ...

    expect = Expectation(STTHint("phone"))
    await transcribe(Plain(), _nothing(), FORMAT, emit, expect)
    await transcribe(Hinted(), _nothing(), FORMAT, emit, expect)
    assert calls == ["transcribe", f"expecting {STTHint('phone')}"]


def test_a_reply_for_free_speech_has_no_hint() -> None:
    assert Reply("hi").hint() is None
    hint = Reply("?", expecting="choice", options=("a", "b"), language="es").hint()
    assert hint == STTHint("choice", ("a", "b"), "es", False)


async def _nothing() -> AsyncIterable[bytes]:
    return
    yield b""


class DoubtingFakeSTT(FakeSTT):
    """FakeSTT that also heard some turns another way (``Expectation.note``), as
    PocketSphinx does when a grammar of the expected answers hears what the
    general model did not."""

    def __init__(self, turns: list[str], alternatives: dict[str, tuple[str, ...]]) -> None:
        super().__init__(turns)
        self.alternatives = alternatives

    async def transcribe_expecting(
        self,
        audio: AsyncIterable[bytes],
        format: AudioFormat,
        emit: object,
        expect: Expectation,
    ) -> None:
        async def noting(event: STTEvent) -> None:
            if isinstance(event, UserTurn):
                expect.note(event.content, self.alternatives.get(event.content, ()))
            await emit(event)  # type: ignore[operator]

        await self.transcribe(audio, format, noting)


async def test_a_value_the_stt_heard_only_as_an_alternative_is_read_back_then_stored(
    tmp_path: object,
) -> None:
    turns = [
        "i maybe they",  # "i'm eighty eight", as the general model heard it
        "yes",
        "john at gmail dot com",
        "yes",
        "take it",  # "chicken"
        "yes",
        "four one five five five five zero one zero zero",
    ]
    alternatives: dict[str, tuple[str, ...]] = {
        "i maybe they": ("i'm eighty eight",),
        "take it": ("chicken",),
    }
    events = await run_form(DoubtingFakeSTT(turns, alternatives), len(turns), tmp_path)
    replies = [e.content for e in events if isinstance(e, AssistantReply)]
    assert replies[1] == "I have 88. Is that right?"
    assert replies[5] == "I have chicken. Is that right?"
    assert [e.answers for e in events if isinstance(e, FormComplete)] == [
        {"age": 88, "email": "john@gmail.com", "meal": "chicken", "phone": "+14155550100"}
    ]


def test_an_expectation_keeps_the_alternatives_of_the_last_turns_only() -> None:
    expect = Expectation()
    expect.note("take it", ("chicken", "take it", ""))
    assert expect.alternatives("take it") == ("chicken",)  # not the turn itself, nor nothing
    assert expect.alternatives("take it please") == ()  # a joined turn: not the same words
    expect.note("take it", ())
    assert expect.alternatives("take it") == ()  # heard again, with no doubt this time
    for n in range(20):
        expect.note(f"turn {n}", (f"other {n}",))
    assert expect.alternatives("turn 0") == ()
    assert expect.alternatives("turn 19") == ("other 19",)
