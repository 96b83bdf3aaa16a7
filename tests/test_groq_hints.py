"""GroqSTT (Whisper) prompted with the session's hint, against respx: each segment's
``prompt`` names what the form expects when that segment ends."""

from __future__ import annotations

import pytest
import respx

from tests.support import silence
from tests.test_groq_stt import BASE, KEY, TRANSCRIBE, form_fields, groq_api, transcription
from tests.test_segmenter import MONO16, stream, tone
from voicepipe.events import UserTurn
from voicepipe.providers.base import Expectation, ExpectingSTT, STTEvent, STTHint
from voicepipe.providers.groq import GroqSTT, whisper_prompt
from voicepipe.segmenter import EnergyVAD

pytestmark = pytest.mark.anyio
__all__ = ["groq_api"]  # the fixture, imported for use here

MEAL = STTHint("choice", ("vegetarian", "chicken", "fish"))


async def test_each_segment_is_prompted_with_the_hint_of_its_moment(
    groq_api: respx.MockRouter,
) -> None:
    route = groq_api.post(TRANSCRIBE).mock(
        side_effect=[transcription("415 555 2671"), transcription("Fish."), transcription("Hi.")]
    )
    stt = GroqSTT(api_key=KEY, base_url=BASE, max_retries=0, vad=EnergyVAD(), prompt="Acme.")
    assert isinstance(stt, ExpectingSTT)
    expect = Expectation(STTHint("phone"))
    hints = [MEAL, None]

    async def emit(event: STTEvent) -> None:
        if isinstance(event, UserTurn):  # the policy's next question changes the hint
            expect.hint = hints.pop(0) if hints else None

    audio = silence(400) + (tone(800) + silence(900)) * 3
    await stt.transcribe_expecting(stream(audio), MONO16, emit, expect)
    prompts = [form_fields(call.request).get("prompt") for call in route.calls]
    assert prompts == [
        "Acme. A phone number, digit by digit: zero, oh, double, triple, plus.",
        "Acme. One of: vegetarian, chicken, fish.",
        "Acme.",
    ]
    await stt.aclose()


async def test_plain_transcribe_sends_no_hint(groq_api: respx.MockRouter) -> None:
    route = groq_api.post(TRANSCRIBE).mock(return_value=transcription("hello"))
    stt = GroqSTT(api_key=KEY, base_url=BASE, max_retries=0)
    assert await stt.transcribe_segment(tone(300), MONO16) == "hello"
    assert "prompt" not in form_fields(route.calls.last.request)
    await stt.aclose()


def test_prompts_carry_no_example_value() -> None:
    assert whisper_prompt(None) == ""
    assert whisper_prompt(STTHint("choice")) == ""  # no options: nothing to name
    assert whisper_prompt(STTHint("text")) == ""
    assert whisper_prompt(STTHint("yes_no", language="es-MX")) == "Sí o no."
    for kind in ("phone", "email", "number", "date", "yes_no"):
        assert not any(ch.isdigit() for ch in whisper_prompt(STTHint(kind)))
