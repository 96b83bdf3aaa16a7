"""The VAD segmenter on generated audio: tone bursts and silences of known lengths.

An :class:`EnergyVAD` makes the segment boundaries exact to the frame, so
durations are asserted within a frame or two; webrtcvad has a hangover of a
few frames and gets a looser check. Event order is asserted, never time.
"""

from __future__ import annotations

import math
import sys
from collections.abc import AsyncIterator, Sequence

import anyio
import anyio.lowlevel
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests import support
from tests.support import silence
from voicepipe.audio import AudioFormat, chunk_pcm
from voicepipe.errors import ProviderError
from voicepipe.events import ErrorEvent, SpeechStarted, TranscriptFinal, UserTurn
from voicepipe.providers.base import STT, STTEvent
from voicepipe.segmenter import (
    BatchSTT,
    EnergyVAD,
    SegmentedSTT,
    WebRtcVAD,
    default_vad,
)

pytestmark = pytest.mark.anyio

MONO16 = AudioFormat(16000, 1)
FRAME_S = 0.020


def tone(ms: float, fmt: AudioFormat = MONO16, freq: float = 440.0, amp: int = 8000) -> bytes:
    """A sine burst, loud enough to be speech to any VAD."""
    return support.tone(ms, fmt, hz=freq, amplitude=amp)


async def stream(pcm: bytes, fmt: AudioFormat = MONO16, ms: float = 20) -> AsyncIterator[bytes]:
    """Audio chunks as a client sends them, yielding to the scheduler between chunks."""
    for chunk in chunk_pcm(pcm, fmt, ms):
        yield chunk
        await anyio.lowlevel.checkpoint()


class FakeBatch:
    """A scripted batch STT that records what it was given."""

    def __init__(self, texts: Sequence[str | BaseException] = ()) -> None:
        self.texts = list(texts)
        self.segments: list[tuple[bytes, AudioFormat]] = []
        self.gate: anyio.Event | None = None

    async def transcribe_segment(self, pcm: bytes, format: AudioFormat) -> str:
        self.segments.append((pcm, format))
        if self.gate is not None and len(self.segments) == 1:
            await self.gate.wait()
        item = self.texts.pop(0) if self.texts else f"segment {len(self.segments)}"
        if isinstance(item, BaseException):
            raise item
        return item

    def durations(self) -> list[float]:
        return [fmt.duration(len(pcm)) for pcm, fmt in self.segments]


async def run(
    stt: SegmentedSTT, audio: AsyncIterator[bytes], fmt: AudioFormat = MONO16
) -> list[STTEvent]:
    events: list[STTEvent] = []

    async def emit(event: STTEvent) -> None:
        events.append(event)

    await stt.transcribe(audio, fmt, emit)
    return events


def assert_durations(actual: list[float], expected: list[float], frames: float = 2) -> None:
    assert len(actual) == len(expected), (actual, expected)
    for got, want in zip(actual, expected, strict=True):
        assert abs(got - want) <= frames * FRAME_S + 1e-9, (actual, expected)


def energy_stt(batch: BatchSTT, *, max_segment_s: float = 30.0) -> SegmentedSTT:
    return SegmentedSTT(batch, vad=EnergyVAD(), max_segment_s=max_segment_s)


async def test_two_turns_with_known_lengths() -> None:
    batch = FakeBatch(["hello there", "goodbye"])
    audio = silence(500) + tone(1000) + silence(800) + tone(600) + silence(1000)

    events = await run(energy_stt(batch), stream(audio))

    assert events == [
        SpeechStarted(),
        TranscriptFinal(content="hello there"),
        UserTurn(content="hello there"),
        SpeechStarted(),
        TranscriptFinal(content="goodbye"),
        UserTurn(content="goodbye"),
    ]
    # pre-roll 200 ms + the burst + post-roll 200 ms, as 16 kHz mono
    assert_durations(batch.durations(), [1.4, 1.0])
    assert all(fmt == MONO16 for _, fmt in batch.segments)
    # The turn ended after 600 ms of silence (a frame more is fine), then transcription.
    for turn in (e for e in events if isinstance(e, UserTurn)):
        assert turn.endpoint_ms is not None
        assert 600 <= turn.endpoint_ms < 600 + 40 + 1000
    start = MONO16.bytes_for(300)  # the segment starts 200 ms before the burst at 500 ms
    assert batch.segments[0][0] == audio[start : start + len(batch.segments[0][0])]


async def test_speech_during_a_slow_transcription_is_not_lost() -> None:
    batch = FakeBatch(["first", "second"])
    batch.gate = anyio.Event()
    events: list[STTEvent] = []

    async def emit(event: STTEvent) -> None:
        events.append(event)

    async def audio() -> AsyncIterator[bytes]:
        async for chunk in stream(silence(300) + tone(500) + silence(700) + tone(700)):
            yield chunk
        # All audio read while the first segment is still being transcribed:
        # the second turn has started and its speech is being collected.
        assert events == [SpeechStarted(), SpeechStarted()]
        assert len(batch.segments) == 1
        batch.gate.set()  # type: ignore[union-attr]
        async for chunk in stream(silence(1000)):
            yield chunk

    await energy_stt(batch).transcribe(audio(), MONO16, emit)

    assert events == [
        SpeechStarted(),
        SpeechStarted(),
        TranscriptFinal(content="first"),
        UserTurn(content="first"),
        TranscriptFinal(content="second"),
        UserTurn(content="second"),
    ]
    assert_durations(batch.durations(), [0.9, 1.1])


async def test_a_long_segment_is_cut_and_the_turn_goes_on() -> None:
    batch = FakeBatch(["a", "b", "c"])
    # 1100 ms of speech, segments of at most 600 ms: 200 pre-roll + 400,
    # then 600, then the last 100 ms + 200 ms post-roll (cut inside the pause).
    audio = silence(400) + tone(1100) + silence(1000)

    events = await run(energy_stt(batch, max_segment_s=0.6), stream(audio))

    assert events == [
        SpeechStarted(),
        TranscriptFinal(content="a"),
        TranscriptFinal(content="b"),
        TranscriptFinal(content="c"),
        UserTurn(content="a b c"),
    ]
    assert_durations(batch.durations(), [0.6, 0.6, 0.3])


async def test_a_click_is_not_speech_but_a_short_word_is() -> None:
    batch = FakeBatch(["no"])
    audio = silence(400) + tone(60) + silence(1000) + tone(260) + silence(800)

    events = await run(energy_stt(batch), stream(audio))

    assert events == [SpeechStarted(), TranscriptFinal(content="no"), UserTurn(content="no")]
    assert_durations(batch.durations(), [0.66])


async def test_speech_at_the_end_of_the_audio_still_ends_a_turn() -> None:
    batch = FakeBatch(["cut off"])

    events = await run(energy_stt(batch), stream(silence(200) + tone(500) + silence(100)))

    assert events == [
        SpeechStarted(),
        TranscriptFinal(content="cut off"),
        UserTurn(content="cut off"),
    ]
    assert_durations(batch.durations(), [0.2 + 0.5 + 0.1])


async def test_empty_text_makes_no_turn() -> None:
    batch = FakeBatch(["", "  "])

    events = await run(
        energy_stt(batch), stream(tone(400) + silence(800) + tone(400) + silence(800))
    )

    assert events == [SpeechStarted(), SpeechStarted()]


async def test_a_failed_transcription_is_reported_and_listening_goes_on() -> None:
    batch = FakeBatch([ProviderError("stt", "Groq returned HTTP 500"), RuntimeError("boom"), "ok"])
    audio = b"".join(tone(300) + silence(700) for _ in range(3))

    events = await run(energy_stt(batch), stream(audio))

    assert events == [
        SpeechStarted(),
        ErrorEvent(stage="stt", message="Groq returned HTTP 500"),
        SpeechStarted(),
        ErrorEvent(stage="stt", message="transcription failed: RuntimeError: boom"),
        SpeechStarted(),
        TranscriptFinal(content="ok"),
        UserTurn(content="ok"),
    ]


async def test_a_fatal_transcription_error_propagates_as_itself() -> None:
    fatal = ProviderError("stt", "bad key", recoverable=False, status=401)
    batch = FakeBatch([fatal])

    async def endless() -> AsyncIterator[bytes]:
        yield tone(400) + silence(800)
        while True:  # the STT must stop reading on its own
            yield silence(20)
            await anyio.lowlevel.checkpoint()

    with pytest.raises(ProviderError) as info:
        await run(energy_stt(batch), endless())
    assert info.value is fatal


async def test_stereo_48k_input_is_segmented_as_16k_mono() -> None:
    fmt = AudioFormat(48000, 2)
    batch = FakeBatch(["stereo"])
    audio = silence(500, fmt) + tone(800, fmt) + silence(900, fmt)

    events = await run(energy_stt(batch), stream(audio, fmt, ms=10), fmt)

    assert events == [
        SpeechStarted(),
        TranscriptFinal(content="stereo"),
        UserTurn(content="stereo"),
    ]
    assert batch.segments[0][1] == MONO16
    assert_durations(batch.durations(), [1.2])


async def test_webrtcvad_finds_tone_bursts() -> None:
    pytest.importorskip("webrtcvad")
    batch = FakeBatch(["one", "two"])
    rng = np.random.default_rng(7)
    audio = silence(500) + tone(1000) + silence(900) + tone(600, freq=300) + silence(1000)
    noisy = (np.frombuffer(audio, "<i2") + rng.normal(0, 20, len(audio) // 2)).astype("<i2")

    events = await run(SegmentedSTT(batch, vad=WebRtcVAD()), stream(noisy.tobytes()))

    assert events == [
        SpeechStarted(),
        TranscriptFinal(content="one"),
        UserTurn(content="one"),
        SpeechStarted(),
        TranscriptFinal(content="two"),
        UserTurn(content="two"),
    ]
    # webrtcvad hangs on for a few frames after the speech stops
    assert_durations(batch.durations(), [1.4 + 0.06, 1.0 + 0.06], frames=5)


def test_default_vad_prefers_webrtcvad(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("webrtcvad")
    assert isinstance(default_vad(), WebRtcVAD)
    monkeypatch.setitem(sys.modules, "webrtcvad", None)  # as if not installed
    assert isinstance(default_vad(), EnergyVAD)


def test_is_an_stt_and_checks_its_options() -> None:
    assert isinstance(SegmentedSTT(FakeBatch()), STT)
    assert isinstance(FakeBatch(), BatchSTT)
    with pytest.raises(ValueError, match="positive"):
        SegmentedSTT(FakeBatch(), silence_ms=0)
    pytest.importorskip("webrtcvad")
    with pytest.raises(ValueError, match="sample_rate"):
        SegmentedSTT(FakeBatch(), vad=WebRtcVAD(), sample_rate=22050)


AUDIO = silence(300) + tone(700) + silence(700) + tone(300) + silence(100)


@settings(max_examples=20, deadline=None)
@given(sizes=st.lists(st.integers(min_value=1, max_value=400), min_size=1, max_size=20))
def test_chunk_sizes_do_not_change_the_segments(sizes: list[int]) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        pos, i = 0, 0
        while pos < len(AUDIO):
            size = 2 * sizes[i % len(sizes)]  # whole samples
            yield AUDIO[pos : pos + size]
            pos, i = pos + size, i + 1

    batch = FakeBatch()
    anyio.run(run, energy_stt(batch), chunks())
    reference = FakeBatch()
    anyio.run(run, energy_stt(reference), stream(AUDIO))
    assert [pcm for pcm, _ in batch.segments] == [pcm for pcm, _ in reference.segments]
    assert len(reference.segments) == 2
    assert math.isclose(reference.durations()[0], 1.1)
