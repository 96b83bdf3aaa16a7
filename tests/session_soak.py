"""Sessions that leave at random points, many times over: does anything grow?

:func:`soak` runs pipelines (fake providers, virtual time) whose consumer
leaves at a random event (``break``), raises, or cancels, and measures live
tasks, open file descriptors and traced Python memory after a warm-up and at
the end. Used by tests/test_pipeline_soak.py and benchmarks/soak_sessions.py.
"""

from __future__ import annotations

import gc
import os
import random
import tracemalloc
from collections.abc import AsyncIterator
from dataclasses import dataclass

import anyio

from tests import virtual_time
from tests.support import FORMAT, silence, tone
from voicepipe import ConversationPolicy, Pipeline
from voicepipe.providers.fake import FakeLLM, FakeSTT, FakeTTS

WARM_UP = 50


@dataclass(frozen=True)
class Growth:
    backend: str
    sessions: int
    tasks: int  # live tasks at the end minus after the warm-up
    fds: int
    bytes_per_session: float


def _live_tasks() -> int:
    try:
        import asyncio

        return len(asyncio.all_tasks())
    except RuntimeError:  # trio: count the task tree
        import trio

        def count(task: trio.lowlevel.Task) -> int:
            return 1 + sum(count(t) for n in task.child_nurseries for t in n.child_tasks)

        return count(trio.lowlevel.current_root_task())  # type: ignore[arg-type]


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def _session(rng: random.Random) -> None:
    stt = FakeSTT(["tell me something", "and more", "bye"], silence_ms=200)
    llm = FakeLLM(
        ["One thing. Another thing.", "More. And more."],
        ttft=rng.choice([0.0, 0.05]),
        token_delay=rng.choice([0.0, 0.01]),
    )
    tts = FakeTTS(chunk_delay=rng.choice([0.0, 0.02]))
    policy = ConversationPolicy(greeting="Hello there.", farewell="Bye now.")
    pipeline = Pipeline(
        stt=stt,
        llm=llm,
        tts=tts,
        policy=policy,
        input_format=FORMAT,
        realtime_lead=rng.choice([None, 0.1]),
    )

    async def microphone() -> AsyncIterator[bytes]:
        for _ in range(3):
            for chunk in (tone(20),) * 20 + (silence(20),) * 25:
                await anyio.sleep(0.02)
                yield chunk
        await anyio.sleep_forever()

    leave_at = rng.randrange(60)
    how = rng.choice(["break", "raise", "cancel"])
    with anyio.CancelScope() as scope:
        try:
            async with pipeline.run(microphone()) as events:
                index = 0
                async for _event in events:
                    if index == leave_at:
                        if how == "break":
                            break
                        if how == "raise":
                            raise LookupError("the caller's code failed")
                        scope.cancel()
                    index += 1
        except LookupError:
            pass
    assert stt.closed and llm.open_streams == 0 and tts.open_streams == 0


async def soak_async(sessions: int, seed: int) -> tuple[int, int, int, int, int, int]:
    rng = random.Random(seed)
    for _ in range(WARM_UP):
        await _session(rng)
    gc.collect()
    tasks0, fds0, mem0 = _live_tasks(), _fds(), tracemalloc.get_traced_memory()[0]
    for _ in range(sessions - WARM_UP):
        await _session(rng)
    gc.collect()
    return tasks0, fds0, mem0, _live_tasks(), _fds(), tracemalloc.get_traced_memory()[0]


def soak(backend: str, sessions: int = 500, seed: int = 10) -> Growth:
    """Run ``sessions`` sessions on ``backend`` and measure the growth after the warm-up."""
    if sessions <= WARM_UP:
        raise ValueError(f"run more than the {WARM_UP} warm-up sessions")
    started = not tracemalloc.is_tracing()
    if started:
        tracemalloc.start()
    try:

        async def main() -> tuple[int, int, int, int, int, int]:
            return await soak_async(sessions, seed)

        tasks0, fds0, mem0, tasks1, fds1, mem1 = virtual_time.run(main, backend)
    finally:
        if started:
            tracemalloc.stop()
    measured = sessions - WARM_UP
    return Growth(backend, measured, tasks1 - tasks0, fds1 - fds0, (mem1 - mem0) / measured)
