"""Audio in, events out: a bundled recording through a Pipeline of fake providers.

Run: ``python examples/quickstart.py [path/to/16k-mono.wav]``. FakeSTT hears
speech by its loudness and "transcribes" it with scripted text, so this runs
anywhere, instantly; swap in real providers (see the README) for real speech.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import anyio

from voicepipe import AudioChunk, ConversationPolicy, Finish, Pipeline
from voicepipe.audio import chunk_pcm, read_wav
from voicepipe.providers.fake import FakeLLM, FakeSTT, FakeTTS

SAMPLE = Path(__file__).parent / "audio" / "two_turns.wav"


async def main(path: Path) -> None:
    pcm, fmt = read_wav(path)

    async def microphone() -> AsyncIterator[bytes]:
        for chunk in chunk_pcm(pcm, fmt, ms=20):
            yield chunk

    pipeline = Pipeline(
        stt=FakeSTT(["what is the capital of france", "thank you goodbye"]),
        llm=FakeLLM(["The capital of France is Paris."]),
        tts=FakeTTS(),
        policy=ConversationPolicy(farewell="Goodbye!"),
        input_format=fmt,
        barge_in=False,  # a recording plays faster than real time: answer every turn
    )
    audio_bytes = 0
    async with pipeline.run(microphone()) as events:
        async for event in events:
            if isinstance(event, AudioChunk):
                audio_bytes += len(event.audio)
            elif isinstance(event, Finish):
                print("finish", event.reason)
            else:
                print(event.type, getattr(event, "content", ""))
    print(f"{audio_bytes} bytes of reply audio")


if __name__ == "__main__":
    anyio.run(main, Path(sys.argv[1]) if len(sys.argv) > 1 else SAMPLE)
