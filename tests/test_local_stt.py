"""PocketSphinx for real on the bundled samples: words, turns, formats, cleanup."""

from __future__ import annotations

import json
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import numpy as np
import pytest

from voicepipe.audio import AudioFormat, chunk_pcm, read_wav, resample
from voicepipe.events import SpeechStarted, TranscriptFinal, TranscriptInterim, UserTurn
from voicepipe.providers.base import STT, STTEvent

pytest.importorskip("pocketsphinx", reason="PocketSphinx is not installed (the 'local' extra)")

from voicepipe.providers.local import PocketSphinxSTT

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

SAMPLES_DIR = Path(__file__).parent.parent / "examples" / "audio"
SAMPLES: dict[str, list[str]] = json.loads((SAMPLES_DIR / "samples.json").read_text())


def wer(reference: str, hypothesis: str) -> float:
    """Word error rate: word-level edit distance over the reference length."""
    ref, hyp = reference.lower().split(), hypothesis.lower().split()
    previous = list(range(len(hyp) + 1))
    for i, word in enumerate(ref, 1):
        current = [i]
        for j, other in enumerate(hyp, 1):
            current.append(
                min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (word != other))
            )
        previous = current
    return previous[-1] / max(1, len(ref))


def test_wer_helper() -> None:
    assert wer("a b c d", "a b c d") == 0
    assert wer("a b c d", "a x c") == 0.5
    assert wer("a b", "") == 1


async def chunks(pcm: bytes, fmt: AudioFormat, ms: float = 20) -> AsyncIterator[bytes]:
    for chunk in chunk_pcm(pcm, fmt, ms):
        yield chunk


async def transcribe(stt: STT, pcm: bytes, fmt: AudioFormat) -> list[STTEvent]:
    events: list[STTEvent] = []

    async def emit(event: STTEvent) -> None:
        events.append(event)

    await stt.transcribe(chunks(pcm, fmt), fmt, emit)
    return events


@pytest.mark.parametrize("name", sorted(SAMPLES))
async def test_sample_transcript_within_25_percent_wer(name: str) -> None:
    pcm, fmt = read_wav(SAMPLES_DIR / name)
    events = await transcribe(PocketSphinxSTT(), pcm, fmt)

    turns = [e.content for e in events if isinstance(e, UserTurn)]
    assert len(turns) == len(SAMPLES[name]), turns
    for text, turn in zip(SAMPLES[name], turns, strict=True):
        assert wer(text, turn) <= 0.25, (text, turn)
    # Each turn says how long after the last word it ended: at least the silence waited for.
    for event in (e for e in events if isinstance(e, UserTurn)):
        assert event.endpoint_ms is not None
        assert event.endpoint_ms >= 600
    # Each turn: speech started, interims, then its final text and the turn.
    kinds = [type(e) for e in events]
    assert kinds[0] is SpeechStarted
    assert kinds.count(SpeechStarted) == len(turns)
    assert TranscriptInterim in kinds
    finals = [e.content for e in events if isinstance(e, TranscriptFinal)]
    assert finals == turns


async def test_a_session_hears_the_same_whatever_ran_before_it() -> None:
    # Pooled decoders are reused: each session starts from the same cepstral
    # mean, not the last speaker's (homework.wav was "my own work" only when
    # it was the first decode in the process).
    homework, fmt = read_wav(SAMPLES_DIR / "homework.wav")
    other, _ = read_wav(SAMPLES_DIR / "book_a_table.wav")
    stt = PocketSphinxSTT()
    heard = []
    for pcm in (homework, other, other, homework, homework):
        events = await transcribe(stt, pcm, fmt)
        heard.append([e.content for e in events if isinstance(e, UserTurn)])
    assert heard[0] == heard[3] == heard[4] == ["can you help me with my homework"]


@pytest.mark.parametrize("target", [AudioFormat(44100, 1), AudioFormat(48000, 2)])
async def test_other_input_formats_are_resampled(target: AudioFormat) -> None:
    pcm, fmt = read_wav(SAMPLES_DIR / "capital_of_france.wav")
    converted = resample(pcm, fmt, AudioFormat(target.sample_rate, 1))
    if target.channels == 2:
        samples = np.frombuffer(converted, dtype="<i2")
        converted = np.repeat(samples, 2).tobytes()
    events = await transcribe(PocketSphinxSTT(), converted, target)
    turns = [e.content for e in events if isinstance(e, UserTurn)]
    assert len(turns) == 1
    assert wer(SAMPLES["capital_of_france.wav"][0], turns[0]) <= 0.25


async def test_silence_gives_no_events() -> None:
    fmt = AudioFormat(16000, 1)
    assert await transcribe(PocketSphinxSTT(), bytes(fmt.bytes_for(2000)), fmt) == []


async def test_input_ending_mid_utterance_still_reports_the_turn() -> None:
    pcm, fmt = read_wav(SAMPLES_DIR / "what_time_is_it.wav")
    cut = pcm[: fmt.bytes_for(1250)]  # the words, and no silence after them
    events = await transcribe(PocketSphinxSTT(), cut, fmt)
    turns = [e.content for e in events if isinstance(e, UserTurn)]
    assert len(turns) == 1
    assert wer("what time is it", turns[0]) <= 0.25


async def test_cancelled_mid_utterance_returns_promptly() -> None:
    pcm, fmt = read_wav(SAMPLES_DIR / "book_a_table.wav")
    started = anyio.Event()

    async def emit(event: STTEvent) -> None:
        if isinstance(event, SpeechStarted):
            started.set()

    async def slow_audio() -> AsyncIterator[bytes]:
        for chunk in chunk_pcm(pcm, fmt, 20):
            await anyio.sleep(0.001)
            yield chunk

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(PocketSphinxSTT().transcribe, slow_audio(), fmt, emit)
            await started.wait()
            tg.cancel_scope.cancel()
    assert not [t for t in threading.enumerate() if t.name.startswith("voicepipe")]


async def test_transcribe_segment_for_the_segmenter() -> None:
    pcm, fmt = read_wav(SAMPLES_DIR / "homework.wav")
    text = await PocketSphinxSTT().transcribe_segment(pcm, fmt)
    assert wer(SAMPLES["homework.wav"][0], text) <= 0.25


def test_is_an_stt() -> None:
    assert isinstance(PocketSphinxSTT(), STT)
