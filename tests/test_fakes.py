"""The fake providers behave as documented: users test their apps with them."""

from __future__ import annotations

import array
import itertools
import sys

import pytest
from pydantic import BaseModel

from tests.support import FORMAT, chunks, silence, tone
from voicepipe import Message, ProviderError, Usage
from voicepipe.events import SpeechStarted, TranscriptFinal, TranscriptInterim, UserTurn
from voicepipe.providers import LLM, STT, TTS
from voicepipe.providers.base import STTEvent
from voicepipe.providers.fake import FakeLLM, FakeSTT, FakeTTS

pytestmark = pytest.mark.anyio


def test_fakes_implement_the_protocols() -> None:
    assert isinstance(FakeSTT(), STT)
    assert isinstance(FakeLLM(), LLM)
    assert isinstance(FakeTTS(), TTS)


async def transcribe(stt: FakeSTT, pcm: bytes, chunk_ms: int = 20) -> list[STTEvent]:
    events: list[STTEvent] = []

    async def emit(event: STTEvent) -> None:
        events.append(event)

    await stt.transcribe(chunks(pcm, chunk_ms), FORMAT, emit)
    return events


async def test_fake_stt_turns_on_speech_and_silence() -> None:
    stt = FakeSTT(["one two three", "four"], silence_ms=300)
    pcm = tone(300) + silence(300) + tone(100) + silence(300)
    events = await transcribe(stt, pcm)
    assert events == [
        SpeechStarted(),
        TranscriptInterim(content="one"),  # every 100 ms of speech, a longer prefix
        TranscriptInterim(content="one two"),
        TranscriptInterim(content="one two three"),
        TranscriptFinal(content="one two three"),
        UserTurn(content="one two three"),
        SpeechStarted(),
        TranscriptInterim(content="four"),
        TranscriptFinal(content="four"),
        UserTurn(content="four"),
    ]
    assert stt.received_bytes == len(pcm)
    assert stt.closed
    turns = [e for e in events if isinstance(e, UserTurn)]
    assert [t.endpoint_ms for t in turns] == [300, 300]  # the silence it waited for


async def test_fake_stt_needs_enough_silence_and_ignores_chunking() -> None:
    pcm = tone(200) + silence(200) + tone(200) + silence(400)  # 200 ms pause < 300 ms
    for chunk_ms in (10, 20, 30, 100):
        events = await transcribe(FakeSTT(["a b c d"]), pcm, chunk_ms)
        assert [e for e in events if isinstance(e, UserTurn)] == [UserTurn(content="a b c d")]


async def test_fake_stt_quiet_audio_is_not_speech() -> None:
    events = await transcribe(FakeSTT(["never"]), tone(500, amplitude=600))  # RMS ~424 < 500
    assert events == []


@pytest.mark.parametrize(
    ("samples", "threshold", "speech"),
    [
        ((424,), 424.0, True),  # RMS exactly 424
        ((424,), 424.5, False),
        ((424, 425), 424.5, True),  # RMS 424.5006: within a unit under a fractional threshold
        ((424, 425), 424.6, False),
        ((-600, 600), 600.0, True),
    ],
)
async def test_fake_stt_threshold_is_the_exact_rms(
    samples: tuple[int, ...], threshold: float, speech: bool
) -> None:
    window = FORMAT.bytes_for(20) // 2
    pattern = array.array("h", samples * (window // len(samples)))
    assert sys.byteorder == "little"
    pcm = pattern.tobytes() * 15 + silence(400)
    for chunk_ms in (20, 100):  # one window per chunk, and five
        events = await transcribe(FakeSTT(["x"], threshold=threshold), pcm, chunk_ms)
        assert any(isinstance(e, SpeechStarted) for e in events) is speech


async def test_fake_stt_unscripted_and_endless_scripts() -> None:
    stt = FakeSTT(["only"])
    events = await transcribe(stt, (tone(100) + silence(400)) * 2)
    assert [e.content for e in events if isinstance(e, UserTurn)] == ["only"]
    assert stt.unscripted_turns == 1
    endless = FakeSTT(itertools.repeat("hi"))
    events = await transcribe(endless, (tone(100) + silence(400)) * 3)
    assert [e.content for e in events if isinstance(e, UserTurn)] == ["hi"] * 3


async def test_fake_llm_streams_words_that_join_back() -> None:
    llm = FakeLLM(["Hello there,  world!"])
    usage = Usage()
    deltas = [d async for d in llm.stream([Message("user", "hi")], usage=usage)]
    assert deltas == ["Hello", " there,", "  world!"]
    assert usage.completion_tokens == 3
    assert llm.calls == [[Message("user", "hi")]]
    assert llm.open_streams == 0
    assert llm.completed_streams == 1


async def test_fake_llm_echo_callable_and_scripted_errors() -> None:
    echo = FakeLLM()
    assert [d async for d in echo.stream([Message("user", "say this")])] == ["say", " this"]
    upper = FakeLLM(lambda messages: messages[-1].content.upper())
    assert [d async for d in upper.stream([Message("user", "hi")])] == ["HI"]
    failing = FakeLLM([ProviderError("llm", "quota")])
    with pytest.raises(ProviderError, match="quota"):
        _ = [d async for d in failing.stream([])]
    with pytest.raises(ProviderError, match="no scripted reply left"):
        _ = [d async for d in failing.stream([])]
    assert failing.open_streams == 0


async def test_fake_llm_keeps_only_its_last_calls() -> None:
    llm = FakeLLM(keep_calls=2)  # a long-lived fake must not grow without bound
    for word in ["one", "two", "three"]:
        _ = [d async for d in llm.stream([Message("user", word)])]
    assert llm.calls == [[Message("user", "two")], [Message("user", "three")]]
    assert llm.n_calls == 3
    everything = FakeLLM(keep_calls=None)
    for _ in range(1001):
        _ = [d async for d in everything.stream([Message("user", "hi")])]
    assert len(everything.calls) == 1001
    with pytest.raises(ValueError, match="keep_calls"):
        FakeLLM(keep_calls=-1)


async def test_fake_tts_keeps_only_its_last_texts() -> None:
    tts = FakeTTS(keep_texts=2)  # a long-lived fake (a soak, a server) must not grow
    for text in ["one", "two", "three"]:
        _ = [c async for c in tts.synthesize(text)]
    assert tts.texts == ["two", "three"]
    assert tts.n_texts == 3
    default = FakeTTS(chunk_ms=1000, ms_per_char=1)
    for _ in range(1001):
        _ = [c async for c in default.synthesize("hi")]
    assert len(default.texts) == 1000
    everything = FakeTTS(keep_texts=None, chunk_ms=1000, ms_per_char=1)
    for _ in range(1001):
        _ = [c async for c in everything.synthesize("hi")]
    assert len(everything.texts) == 1001
    with pytest.raises(ValueError, match="keep_texts"):
        FakeTTS(keep_texts=-1)


class Answer(BaseModel):
    value: int


async def test_fake_llm_complete_json() -> None:
    llm = FakeLLM(['{"value": 24}', "not json"])
    assert await llm.complete_json([], Answer) == Answer(value=24)
    with pytest.raises(ProviderError, match="not a valid Answer"):
        await llm.complete_json([], Answer)
    assert len(llm.json_calls) == 2


async def test_fake_llm_closing_early_is_recorded() -> None:
    llm = FakeLLM(["one two three"])
    stream = llm.stream([])
    assert await anext(stream) == "one"
    assert llm.open_streams == 1
    await stream.aclose()
    assert llm.open_streams == 0
    assert llm.completed_streams == 0


async def test_fake_tts_length_grows_with_text() -> None:
    tts = FakeTTS(sample_rate=16000, ms_per_char=10, chunk_ms=50)
    audio = b"".join([c async for c in tts.synthesize("Hello")])  # 50 ms
    assert len(audio) == tts.audio_bytes("Hello") == 1600
    longer = b"".join([c async for c in tts.synthesize("Hello, world")])
    assert len(longer) == tts.audio_bytes("Hello, world") > len(audio)
    assert tts.texts == ["Hello", "Hello, world"]
    assert tts.output_format.sample_rate == 16000
    with pytest.raises(ProviderError, match="told to fail"):
        _ = [c async for c in FakeTTS(fail_on=["bad"]).synthesize("bad")]
