"""Helpers shared by the tests: generated audio and event collection."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Iterable, Sequence
from typing import TypeVar

import numpy as np

from voicepipe.audio import AudioFormat, chunk_pcm
from voicepipe.events import Event
from voicepipe.testing import assert_session_ok

FORMAT = AudioFormat(16000, 1)
E = TypeVar("E")


def tone(ms: float, fmt: AudioFormat = FORMAT, hz: float = 300.0, amplitude: int = 5000) -> bytes:
    """A sine tone (the same on every channel): speech to FakeSTT and the VADs."""
    t = np.arange(int(fmt.sample_rate * ms / 1000)) / fmt.sample_rate
    mono = (amplitude * np.sin(2 * np.pi * hz * t)).astype("<i2")
    return np.repeat(mono, fmt.channels).tobytes()


def silence(ms: float, fmt: AudioFormat = FORMAT) -> bytes:
    return bytes(fmt.bytes_for(ms))


def utterance(speech_ms: int = 400, silence_ms: int = 500) -> bytes:
    """One user turn for FakeSTT: speech, then enough silence to end the turn."""
    return tone(speech_ms) + silence(silence_ms)


async def chunks(pcm: bytes, ms: int = 20, fmt: AudioFormat = FORMAT) -> AsyncIterator[bytes]:
    for chunk in chunk_pcm(pcm, fmt, ms):
        yield chunk


async def collect(events: AsyncIterable[Event], *, check: bool = True) -> list[Event]:
    """Every event of a session, read to the end; the session contract is checked
    (``voicepipe.testing``) so every test that runs a session tests it too."""
    collected = [event async for event in events]
    if check:
        assert_session_ok(collected)
    return collected


def types(events: Iterable[Event], *, audio: bool = False) -> list[str]:
    """Event types in order; runs of ``audio`` collapse to one unless ``audio``."""
    out: list[str] = []
    for event in events:
        if event.type == "audio" and not audio and out and out[-1] == "audio":
            continue
        out.append(event.type)
    return out


def of_type(events: Sequence[Event], cls: type[E]) -> list[E]:
    """The events of one class, in order."""
    return [e for e in events if isinstance(e, cls)]
