"""voicepipe's core performance figures, on fake providers.

Prints four numbers (targets from DESIGN.md in brackets):

1. pipeline overhead per 20 ms audio chunk                      [< 10 µs]
2. end of user turn -> first audio, beyond what the providers take  [< 2 ms]
3. concurrent real-time sessions on one core with p99 input lag < 20 ms  [1,000+]
4. ``python -c "import voicepipe"``                              [< 150 ms]

Run: ``python benchmarks/run.py`` (``--quick`` for a fast smoke run).
Figures depend on the machine; compare runs on the same one.
"""

from __future__ import annotations

import argparse
import array
import gc
import itertools
import os
import statistics
import subprocess
import sys
import time
import tracemalloc
from collections.abc import AsyncIterator, Sequence

import anyio
import numpy as np

from voicepipe import AudioChunk, AudioFormat, Message, Pipeline, UserTurn
from voicepipe.providers.base import STTEvent
from voicepipe.providers.fake import FakeLLM, FakeSTT, FakeTTS
from voicepipe.text import SentenceSplitter

FMT = AudioFormat(16000, 1)
CHUNK_MS = 20
SILENCE = bytes(FMT.bytes_for(CHUNK_MS))
_t = np.arange(FMT.bytes_for(CHUNK_MS) // 2) / FMT.sample_rate
SPEECH = (5000 * np.sin(2 * np.pi * 300 * _t)).astype("<i2").tobytes()

TTFT, TOKEN_DELAY, TTFB = 0.2, 0.02, 0.1
REPLY = "Sure, here is the answer you asked for. And then a second sentence follows."


def percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


# -- 1. overhead per chunk ------------------------------------------------------


async def chunk_overhead(n: int) -> tuple[float, float]:
    """µs per chunk: FakeSTT on its own, and the same STT inside a Pipeline."""

    async def audio() -> AsyncIterator[bytes]:
        for _ in range(n):
            yield SILENCE

    async def ignore(event: STTEvent) -> None:
        pass

    start = time.perf_counter()
    await FakeSTT().transcribe(audio(), FMT, ignore)
    alone = time.perf_counter() - start

    pipeline = Pipeline(stt=FakeSTT(), llm=FakeLLM(), input_format=FMT)
    start = time.perf_counter()
    async with pipeline.run(audio()) as events:
        async for _ in events:
            pass
    piped = time.perf_counter() - start
    return alone / n * 1e6, piped / n * 1e6


# -- 2. end of turn -> first audio ---------------------------------------------


def providers() -> tuple[FakeLLM, FakeTTS]:
    return FakeLLM(lambda messages: REPLY, ttft=TTFT, token_delay=TOKEN_DELAY), FakeTTS(ttfb=TTFB)


async def direct_first_audio() -> float:
    """The same providers driven by hand, no pipeline: the floor to compare with."""
    llm, tts = providers()
    start = time.perf_counter()
    splitter = SentenceSplitter()
    async for delta in llm.stream([Message("user", "hi")]):
        pieces = splitter.push(delta)
        if pieces:
            break
    async for _chunk in tts.synthesize(pieces[0].strip()):
        return time.perf_counter() - start
    raise AssertionError("no audio")


async def pipeline_first_audio(turns: int) -> list[float]:
    """Seconds from the user_turn event to the first audio event, per turn."""
    llm, tts = providers()
    gates = [anyio.Event() for _ in range(turns)]

    async def audio() -> AsyncIterator[bytes]:
        for index in range(turns):
            if index:
                await gates[index - 1].wait()
            for _ in range(20):
                yield SPEECH
            for _ in range(20):
                yield SILENCE

    results: list[float] = []
    turn_at = 0.0
    pipeline = Pipeline(stt=FakeSTT(["hello there"] * turns), llm=llm, tts=tts, barge_in=False)
    async with pipeline.run(audio()) as events:
        async for event in events:
            if isinstance(event, UserTurn):
                turn_at = time.perf_counter()
            elif isinstance(event, AudioChunk) and turn_at:
                results.append(time.perf_counter() - turn_at)
                turn_at = 0.0
            elif event.type == "metrics":
                gates[len(results) - 1].set()
    return results


def nominal_provider_time() -> float:
    splitter = SentenceSplitter()
    tokens = 0
    for tokens, word in enumerate(REPLY.split(" "), start=1):  # noqa: B007
        if splitter.push(word + " "):
            break
    return TTFT + (tokens - 1) * TOKEN_DELAY + TTFB


# -- 3. concurrent sessions ------------------------------------------------------


async def concurrent_sessions(n: int, seconds: float, chunk_ms: int = CHUNK_MS) -> float:
    """p99 input lag (s) of n sessions each streaming real-time audio in chunk_ms chunks.

    Input lag: how late each chunk reaches the pipeline against its real-time
    schedule. Every session speaks 0.6 s out of every 3 s and gets a spoken
    reply (FakeLLM + FakeTTS, paced to real time as a server would).
    """
    per_chunk = chunk_ms / 1000
    speech = SPEECH * (chunk_ms // CHUNK_MS)
    silence = SILENCE * (chunk_ms // CHUNK_MS)
    cycle = [speech] * int(0.6 / per_chunk) + [silence] * int(2.4 / per_chunk)
    chunks = int(seconds / per_chunk)
    lags = array.array("d")  # not tracked by the GC, unlike a list of a million floats
    clock = time.monotonic  # the event loop's clock, without anyio's per-call backend lookup
    start = clock() + 0.5

    async def session(index: int) -> None:
        phase = (index % 97) / 97 * per_chunk  # spread the sessions over a chunk period

        async def audio() -> AsyncIterator[bytes]:
            for i in range(chunks):
                due = start + phase + i * per_chunk
                delay = due - clock()
                if delay > 0:
                    await anyio.sleep(delay)
                lags.append(clock() - due)
                yield cycle[(i + index) % len(cycle)]

        llm = FakeLLM(lambda messages: "Okay, got it.", ttft=TTFT, token_delay=TOKEN_DELAY)
        pipeline = Pipeline(
            stt=FakeSTT(itertools.repeat("hello there")),
            llm=llm,
            tts=FakeTTS(ttfb=TTFB),
            realtime_lead=0.2,
        )
        async with pipeline.run(audio()) as stream:
            async for _event in stream:
                pass

    async with anyio.create_task_group() as tg:
        for index in range(n):
            tg.start_soon(session, index)
    return percentile(lags, 99)


async def session_ramp(counts: Sequence[int], seconds: float, chunk_ms: int) -> int:
    best = 0
    for count in counts:
        gc.collect()
        p99 = await concurrent_sessions(count, seconds, chunk_ms)
        ok = p99 < 0.020
        best = count if ok else best
        print(
            f"   {count:5d} sessions, {chunk_ms} ms chunks: p99 input lag {p99 * 1000:7.1f} ms "
            f"{'ok' if ok else '(over 20 ms)'}"
        )
        if not ok:
            break
    return best


# -- 4. import time --------------------------------------------------------------


def import_time(runs: int = 9) -> tuple[float, float]:
    def median(code: str) -> float:
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], check=True)
            times.append(time.perf_counter() - start)
        return statistics.median(times)

    return median("import voicepipe"), median("pass")


# -- main --------------------------------------------------------------------------


async def main(quick: bool, loop: str) -> None:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core
    print(
        f"voicepipe benchmarks ({'quick' if quick else 'full'}), python {sys.version.split()[0]}, "
        f"event loop: {loop}"
    )

    n = 20_000 if quick else 200_000
    alone, piped = min([await chunk_overhead(n) for _ in range(3)], key=lambda r: r[1])
    print(
        f"1. per 20 ms chunk: {piped:.2f} µs through the pipeline, {alone:.2f} µs of it "
        f"FakeSTT alone -> pipeline overhead {piped - alone:.2f} µs   [target < 10 µs]"
    )

    turns = 5 if quick else 20
    direct = [await direct_first_audio() for _ in range(turns)]
    piped_turns = await pipeline_first_audio(turns)
    nominal = nominal_provider_time()
    floor = statistics.median(direct)
    over = [t - floor for t in piped_turns]
    print(
        f"2. end of turn -> first audio: median {statistics.median(piped_turns) * 1000:.1f} ms; "
        f"providers take {nominal * 1000:.0f} ms nominal, {floor * 1000:.1f} ms measured "
        f"driving them by hand -> pipeline adds {statistics.median(over) * 1000:.2f} ms median, "
        f"{max(over) * 1000:.2f} ms worst of {len(over)}   [target < 2 ms]"
    )

    seconds = 3.0 if quick else 6.0
    print("3. concurrent real-time sessions on one core (FakeSTT/FakeLLM/FakeTTS, paced replies):")
    ramp = [50, 100] if quick else [200, 300, 400, 450, 500, 600, 700, 800, 1000]
    best20 = await session_ramp(ramp, seconds, 20)
    ramp = [100, 200] if quick else [500, 600, 700, 800, 900, 1000, 1200, 1500]
    best100 = await session_ramp(ramp, seconds, 100)
    print(
        f"   -> {best20} sessions with 20 ms chunks, {best100} with 100 ms chunks, "
        f"p99 input lag < 20 ms   [target 1,000+]"
    )
    count = 100 if quick else 1000
    gc.collect()
    tracemalloc.start()
    await concurrent_sessions(count, 2.0, 100)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(f"   memory: {peak / count / 1024:.0f} KiB allocated per live session ({count} sessions)")

    with_vp, bare = import_time(5 if quick else 9)
    print(
        f"4. import voicepipe: {with_vp * 1000:.0f} ms process ({bare * 1000:.0f} ms of it "
        f"interpreter start) -> {(with_vp - bare) * 1000:.0f} ms   [target < 150 ms]"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument(
        "--loop",
        choices=["asyncio", "uvloop"],
        default="asyncio",
        help="asyncio's own event loop, or uvloop (what uvicorn uses when it is installed)",
    )
    args = parser.parse_args()
    anyio.run(main, args.quick, args.loop, backend_options={"use_uvloop": args.loop == "uvloop"})
