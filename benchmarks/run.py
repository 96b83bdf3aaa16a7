"""voicepipe's core performance figures, on fake providers.

Prints four numbers (targets from DESIGN.md and issue 15 in brackets):

1. pipeline overhead per 20 ms audio chunk                      [< 10 µs]
2. end of user turn -> first audio, beyond what the providers take  [< 2 ms]
3. real-time sessions on one core with p99 input lag < 20 ms, every session
   answered [1,000 on uvloop, 500 on asyncio]; the same when they all speak
   at once [200 on uvloop]; CPU per chunk, all in, at each size
4. ``python -c "import voicepipe"``                              [< 150 ms]

Run: ``python benchmarks/run.py`` (``--quick`` for a fast smoke run,
``--loop uvloop`` for uvloop). ``--sessions 500,1000 [--burst]`` runs only step
3 at those sizes, for A/B runs; ``--gc frozen`` calls ``gc.freeze()`` after
start-up and ``--gc-threshold 20000`` raises the collector's generation-0
threshold (``20000,10,10`` sets all three), as ``voicepipe serve`` does (its
``VOICEPIPE_GC_THRESHOLD``, 20000 by default). ``--gc-detail`` prints the
collector's collections and pauses per generation (wall clock and CPU time,
and the cyclic garbage found); ``--gc-objects`` also counts the objects each
collection examined (slower: not for lag figures). Figures depend on the machine;
compare runs on the same one, and on a shared machine compare the CPU per
chunk, not the lag.

Why the threshold matters here: the sessions' objects (about 150 each,
``benchmarks/cost.py --objects``) soon reach the oldest generation, and the
collector's next look at it (every 100 collections of the youngest) is a
full collection that walks them all: a pause of tens of milliseconds per
500 sessions, which alone puts the p99 over 20 ms. With the youngest
generation's threshold at 20,000 instead of 700 that look comes about 30
times less often (not within a 4.5 s run; in a server that runs for hours,
still every several seconds).
"""

from __future__ import annotations

import argparse
import array
import asyncio
import gc
import os
import statistics
import subprocess
import sys
import time
import tracemalloc
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

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


@dataclass(frozen=True)
class SessionRun:
    """What one run of N concurrent sessions measured."""

    sessions: int
    p99_lag: float  # seconds a chunk was pulled after its due time (99th percentile)
    answered: int  # sessions that got reply audio
    cpu: float  # process CPU seconds, all in (set-up, chunks, replies, GC)
    chunks: int  # chunks pulled, all sessions together
    gc: GCPauses  # the garbage collector's collections and pauses

    @property
    def us_per_chunk(self) -> float:
        return self.cpu / self.chunks * 1e6

    @property
    def ok(self) -> bool:
        return self.p99_lag < 0.020 and self.answered == self.sessions


class GCPauses:
    """The garbage collector's collections and pauses per generation, from ``gc.callbacks``.

    A collection of generation ``g`` examines the objects of generations 0..g
    (``examined``, counted only with ``count_objects``: the count itself walks
    the collector's lists, outside the timed pause). ``cpu`` is the pause in
    CPU time, which a loaded machine does not stretch as it does the wall clock.
    """

    def __init__(self, *, count_objects: bool = False) -> None:
        self.count_objects = count_objects
        self.collections = [0, 0, 0]
        self.wall = [0.0, 0.0, 0.0]  # total pause per generation (s)
        self.longest = [0.0, 0.0, 0.0]
        self.cpu = [0.0, 0.0, 0.0]
        self.longest_cpu = [0.0, 0.0, 0.0]
        self.collected = [0, 0, 0]  # unreachable objects found (cyclic garbage)
        self.examined = [0, 0, 0]
        self.most_examined = [0, 0, 0]
        self._started = self._cpu = 0.0

    @property
    def full(self) -> int:
        """Collections of the oldest generation (they walk every object)."""
        return self.collections[2]

    @property
    def longest_pause(self) -> float:
        return max(self.longest)

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        generation = info["generation"]
        if phase == "start":
            if self.count_objects:
                size = sum(len(gc.get_objects(g)) for g in range(generation + 1))
                self.examined[generation] += size
                self.most_examined[generation] = max(self.most_examined[generation], size)
            self._started, self._cpu = time.perf_counter(), time.thread_time()
            return
        wall = time.perf_counter() - self._started
        cpu = time.thread_time() - self._cpu
        self.collections[generation] += 1
        self.wall[generation] += wall
        self.cpu[generation] += cpu
        self.longest[generation] = max(self.longest[generation], wall)
        self.longest_cpu[generation] = max(self.longest_cpu[generation], cpu)
        self.collected[generation] += info["collected"]

    def report(self) -> str:
        """One line per generation that was collected."""
        lines = []
        for g in range(3):
            n = self.collections[g]
            if not n:
                continue
            examined = (
                f", examined {self.examined[g] / n:,.0f} objects on average "
                f"({self.most_examined[g]:,} at most)"
                if self.count_objects
                else ""
            )
            lines.append(
                f"      GC generation {g}: {n} collections, pauses {self.wall[g] * 1000:.1f} ms "
                f"in all, longest {self.longest[g] * 1000:.1f} ms (CPU "
                f"{self.cpu[g] * 1000:.1f} ms in all, longest {self.longest_cpu[g] * 1000:.1f} "
                f"ms), collected {self.collected[g]} objects{examined}"
            )
        return "\n".join(lines) or "      GC: no collections"


async def concurrent_sessions(
    n: int,
    seconds: float = 4.5,
    chunk_ms: int = CHUNK_MS,
    *,
    burst: bool = False,
    count_objects: bool = False,
    anyio_sleep: bool = False,
) -> SessionRun:
    """N real-time sessions in this process; each speaks once and is answered.

    Each session pulls ``seconds`` of audio in ``chunk_ms`` chunks paced by the
    clock (input lag: how late a chunk is pulled after its due time), speaks
    once (400 ms of tone, then silence) at a moment spread over its first 3 s
    (``burst``: all of them start in the same 20 ms, 1 s in), and gets one
    spoken reply from FakeSTT/FakeLLM/FakeTTS with their defaults and
    ConversationPolicy.

    The producer stands in for a transport, so it paces itself with the event
    loop's own ``asyncio.sleep``, as a transport's inbox waits on a bare
    future (``voicepipe.transports.inbox``): ``anyio.sleep`` looks the
    backend up on every call, about 6,500 instructions a chunk on uvloop, a
    fifth of a chunk's whole cost, that no transport pays (``anyio_sleep``
    measures with it, as this benchmark did before).
    """
    per_chunk = chunk_ms / 1000
    speech = SPEECH * (chunk_ms // CHUNK_MS)
    silence = SILENCE * (chunk_ms // CHUNK_MS)
    chunks = int(seconds / per_chunk)
    speech_chunks = -(-400 // chunk_ms)
    lags = array.array("d")  # not tracked by the GC, unlike a list of a million floats
    clock = time.monotonic  # the event loop's clock, without anyio's per-call backend lookup
    start = clock() + 0.5
    answered = 0

    async def session(index: int) -> None:
        nonlocal answered
        phase = (index % 97) / 97 * per_chunk  # spread the sessions over a chunk period
        first = int(1.0 / per_chunk) if burst else int(index / n * 3.0 / per_chunk)
        speaking = range(first, first + speech_chunks)

        async def audio() -> AsyncIterator[bytes]:
            for i in range(chunks):
                due = start + phase + i * per_chunk
                delay = due - clock()
                if delay > 0:
                    await (anyio.sleep(delay) if anyio_sleep else asyncio.sleep(delay))
                lags.append(clock() - due)
                yield speech if i in speaking else silence

        pipeline = Pipeline(stt=FakeSTT(["hello there"]), llm=FakeLLM(), tts=FakeTTS())
        heard = False
        async with pipeline.run(audio()) as stream:
            async for event in stream:
                heard = heard or isinstance(event, AudioChunk)
        answered += heard

    pauses = GCPauses(count_objects=count_objects)
    gc.callbacks.append(pauses)
    cpu = time.process_time()
    try:
        async with anyio.create_task_group() as tg:
            for index in range(n):
                tg.start_soon(session, index)
    finally:
        cpu = time.process_time() - cpu
        gc.callbacks.remove(pauses)
    return SessionRun(n, percentile(lags, 99), answered, cpu, len(lags), pauses)


async def session_ramp(
    counts: Sequence[int],
    seconds: float,
    chunk_ms: int,
    *,
    burst: bool = False,
    gc_detail: bool = False,
    count_objects: bool = False,
    anyio_sleep: bool = False,
) -> SessionRun | None:
    """Raise N until p99 lag passes 20 ms or a session goes unanswered; the last good run."""
    best = None
    for count in counts:
        gc.collect()
        run = await concurrent_sessions(
            count,
            seconds,
            chunk_ms,
            burst=burst,
            count_objects=count_objects,
            anyio_sleep=anyio_sleep,
        )
        best = run if run.ok else best
        print(
            f"   {count:5d} sessions, {chunk_ms} ms chunks{', burst' if burst else ''}: "
            f"p99 input lag {run.p99_lag * 1000:7.1f} ms, answered {run.answered}/{count}, "
            f"CPU {run.us_per_chunk:5.1f} µs per chunk all in, "
            f"GC: {run.gc.full} full, longest pause {run.gc.longest_pause * 1000:5.1f} ms "
            f"{'ok' if run.ok else '(over)'}"
        )
        if gc_detail:
            print(run.gc.report())
        if not run.ok:
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


async def main(args: argparse.Namespace) -> None:
    quick, loop = args.quick, args.loop
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core
    print(
        f"voicepipe benchmarks ({'quick' if quick else 'full'}), python {sys.version.split()[0]}, "
        f"event loop: {loop}, garbage collector: {args.gc}, "
        f"thresholds {','.join(map(str, args.gc_threshold or gc.get_threshold()))}"
    )
    if args.gc == "frozen":
        gc.collect()
        gc.freeze()  # what a server does after start-up: imported modules are never scanned
    if args.gc_threshold:
        thresholds = args.gc_threshold
        gc.set_threshold(*thresholds, *gc.get_threshold()[len(thresholds) :])
    if args.sessions:
        for count in args.sessions:
            gc.collect()
            await session_ramp(
                [count],
                4.5,
                args.chunk_ms,
                burst=args.burst,
                gc_detail=args.gc_detail or args.gc_objects,
                count_objects=args.gc_objects,
                anyio_sleep=args.anyio_sleep,
            )
        return

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

    print("3. real-time sessions on one core, 4.5 s each, one spoken reply each:")
    ramp = [50, 100] if quick else [300, 400, 500, 600, 700, 800, 900, 1000, 1200]
    best20 = await session_ramp(ramp, 4.5, 20)
    ramp = [25, 50] if quick else [50, 100, 150, 200, 250, 300, 400]
    burst = await session_ramp(ramp, 4.5, 20, burst=True)
    ramp = [100, 200] if quick else [500, 600, 700, 800, 1000, 1200, 1500]
    best100 = await session_ramp(ramp, 4.5, 100)

    def most(run: SessionRun | None) -> str:
        return f"{run.sessions} ({run.us_per_chunk:.1f} µs CPU per chunk)" if run else "none"

    print(
        f"   -> p99 input lag < 20 ms, every session answered: {most(best20)} with 20 ms "
        f"chunks [target 1,000 on uvloop, 500 on asyncio]; {most(burst)} speaking at once "
        f"[target 200 on uvloop]; {most(best100)} with 100 ms chunks"
    )
    count = 100 if quick else 1000
    gc.collect()
    tracemalloc.start()
    await concurrent_sessions(count, 4.5, 100)
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
    parser.add_argument(
        "--gc",
        choices=["default", "frozen"],
        default="default",
        help="frozen: gc.freeze() after start-up, as a server would",
    )
    parser.add_argument(
        "--gc-threshold",
        type=lambda text: [int(n) for n in text.split(",")][:3],
        default=[],
        help="the collector's generation-0 threshold, or all three as N,N,N (Python's "
        "default: 700,10,10; voicepipe serve's: 20000)",
    )
    parser.add_argument(
        "--sessions",
        type=lambda text: [int(n) for n in text.split(",")],
        help="only step 3, at these session counts (e.g. 500,1000), for A/B runs",
    )
    parser.add_argument("--burst", action="store_true", help="with --sessions: all speak at once")
    parser.add_argument("--chunk-ms", type=int, default=CHUNK_MS, help="with --sessions")
    parser.add_argument(
        "--anyio-sleep",
        action="store_true",
        help="with --sessions: the producer paces itself with anyio.sleep (this benchmark's "
        "producer before; it costs what no transport pays) instead of asyncio.sleep",
    )
    parser.add_argument(
        "--gc-detail",
        action="store_true",
        help="with --sessions: the collector's collections and pauses per generation",
    )
    parser.add_argument(
        "--gc-objects",
        action="store_true",
        help="with --sessions: --gc-detail and the objects each collection examined "
        "(counting them costs time outside the pauses: not for lag figures)",
    )
    args = parser.parse_args()
    anyio.run(main, args, backend_options={"use_uvloop": args.loop == "uvloop"})
