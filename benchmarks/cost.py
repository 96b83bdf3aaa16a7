"""What a session costs in instructions: per 20 ms chunk, per session, per spoken reply.

Wall-clock figures need a quiet machine; instruction counts do not. This runs
the sessions workload of ``run.py`` (FakeSTT/FakeLLM/FakeTTS with their
defaults, ConversationPolicy, one reply) under ``valgrind --tool=callgrind``
with every chunk taken after a checkpoint instead of a timed sleep, so that
each run does the same work whatever else the machine is doing, and splits
the total by difference:

* **per chunk**: silent sessions of ``2C`` chunks minus the same of ``C``;
* **per session**: set-up and tear-down of a silent session (what is left of
  the ``C``-chunk run after the chunks and the bare interpreter);
* **per reply**: sessions that speak once and are answered, minus silent
  ones (the STT's events, turn-taking, the policy, the LLM and TTS streams,
  the reply's events and the consumer reading them).

The issue's workload (225 chunks and one reply per session) then costs
``per chunk + (per session + per reply) / 225`` per chunk, all in, plus the
event loop's timer for the paced sleep, which this leaves out.

Run: ``python benchmarks/cost.py [--loop uvloop] [--sessions 20] [--chunks 200]``
(each run under valgrind takes a while). ``--gc frozen`` freezes the collector
first, as ``voicepipe serve`` does: the full collections that the extra
allocations of a reply happen to trigger then walk the sessions' objects, not
every imported module's, which makes the per-reply figure steadier. ``--cpu`` measures CPU time per
chunk instead (no valgrind; noisy on a shared machine); ``--objects`` counts
the objects the garbage collector tracks per live session (what a full
collection walks), e.g. ``--objects --sessions 200``; ``--collections`` runs
speaking sessions (``--sessions 1000 --chunks 225 --gc frozen``) and prints
the collector's collections per generation, the objects each examined and
the garbage each found, with the generation-0 threshold at 20,000 as
``voicepipe serve`` sets it (``--gc-threshold``). The producer takes its
trip through the loop with ``asyncio.sleep(0)`` on asyncio, as a transport's
inbox waits on a bare future; ``--anyio-checkpoint`` uses
``anyio.lowlevel.checkpoint`` as this script did before (its backend lookup
is about 5,500 instructions a chunk that no transport pays).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import gc
import os
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator

import anyio


async def sessions(
    n: int, chunks: int, *, speak: bool, pipeline: bool = True, anyio_checkpoint: bool = False
) -> int:
    """Run ``n`` sessions of ``chunks`` chunks each; return the chunks pulled.

    The producer takes each chunk after a trip through the event loop: on
    asyncio ``asyncio.sleep(0)``, as a transport's inbox waits on a bare
    future (``anyio.lowlevel.checkpoint`` looks the backend up on every call,
    the benchmark's own cost; ``anyio_checkpoint`` measures with it).
    """
    import numpy as np

    from voicepipe import AudioChunk, AudioFormat, Pipeline
    from voicepipe.providers.fake import FakeLLM, FakeSTT, FakeTTS

    fmt = AudioFormat(16000, 1)
    silence = bytes(fmt.bytes_for(20))
    t = np.arange(len(silence) // 2) / fmt.sample_rate
    tone = (5000 * np.sin(2 * np.pi * 300 * t)).astype("<i2").tobytes()
    pulled = 0
    answered = 0
    try:
        asyncio.get_running_loop()
    except RuntimeError:  # trio
        anyio_checkpoint = True
    checkpoint = (
        anyio.lowlevel.checkpoint if anyio_checkpoint else functools.partial(asyncio.sleep, 0)
    )

    async def session(index: int) -> None:
        nonlocal answered
        speaking = range(10, 30) if speak else range(0)

        async def audio() -> AsyncIterator[bytes]:
            nonlocal pulled
            for i in range(chunks):
                await checkpoint()
                pulled += 1
                yield tone if i in speaking else silence

        if not pipeline:
            async for _ in audio():
                pass
            return
        p = Pipeline(stt=FakeSTT(["hello there"]), llm=FakeLLM(), tts=FakeTTS())
        heard = False
        async with p.run(audio()) as stream:
            async for event in stream:
                heard = heard or isinstance(event, AudioChunk)
        answered += heard

    async with anyio.create_task_group() as tg:
        for index in range(n):
            tg.start_soon(session, index)
    if speak and answered != n:
        raise AssertionError(f"{answered} of {n} sessions answered")
    return pulled


SPEECH_CHUNKS = 20  # bench_server's turn: 400 ms of tone,
END_CHUNKS = 15  # 300 ms of silence (FakeSTT ends the turn),
BREATH_CHUNKS = 10  # then, once the reply is out, 200 ms before the next turn
TURN_CHUNKS = SPEECH_CHUNKS + END_CHUNKS + BREATH_CHUNKS


async def server_sessions(n: int, turns: int, chunks: int) -> int:
    """``n`` sessions as ``bench_server.py`` runs them in the server; the chunks pulled.

    Each speaks ``turns`` times as the bench's clients do (``TURN_CHUNKS`` a
    turn), then sends ``chunks`` silent chunks; the providers are shared as the
    server shares them (``FakeSTT`` repeating "hello there", ``FakeLLM`` saying
    "Sure.", ``FakeTTS``), with ``ConversationPolicy`` and the server's
    ``realtime_lead`` of 0.2 s; the consumer writes each event's wire form, as
    the server's dialect does. A session waits for each reply's ``assistant``
    without sending (the clients send silence meanwhile: a few chunks), then
    0.3 s of the clock, so the paced reply audio has played before the next
    turn, as in real time.
    """
    import itertools

    import numpy as np

    from voicepipe import AudioFormat, ConversationPolicy, Pipeline
    from voicepipe.events import AssistantReply, to_wire
    from voicepipe.providers.fake import FakeLLM, FakeSTT, FakeTTS

    fmt = AudioFormat(16000, 1)
    silence = bytes(fmt.bytes_for(20))
    t = np.arange(len(silence) // 2) / fmt.sample_rate
    tone = (5000 * np.sin(2 * np.pi * 300 * t)).astype("<i2").tobytes()
    stt = FakeSTT(itertools.repeat("hello there"))
    llm = FakeLLM(lambda messages: "Sure.", keep_calls=0)
    tts = FakeTTS(keep_texts=0)
    pulled = 0

    async def session() -> None:
        replied = anyio.Event()

        async def audio() -> AsyncIterator[bytes]:
            nonlocal pulled, replied
            script = [tone] * SPEECH_CHUNKS + [silence] * END_CHUNKS
            for _ in range(turns):
                for chunk in script:
                    await asyncio.sleep(0)
                    pulled += 1
                    yield chunk
                await replied.wait()
                replied = anyio.Event()
                await asyncio.sleep(0.3)
                for _ in range(BREATH_CHUNKS):
                    await asyncio.sleep(0)
                    pulled += 1
                    yield silence
            for _ in range(chunks):
                await asyncio.sleep(0)
                pulled += 1
                yield silence

        p = Pipeline(stt=stt, llm=llm, tts=tts, policy=ConversationPolicy(), realtime_lead=0.2)
        async with p.run(audio()) as stream:
            async for event in stream:
                to_wire(event)
                if isinstance(event, AssistantReply):
                    replied.set()

    async with anyio.create_task_group() as tg:
        for _ in range(n):
            tg.start_soon(session)
    return pulled


def child(args: argparse.Namespace) -> None:
    import voicepipe  # noqa: F401  (imported in every run alike)

    async def main() -> None:
        await sessions(2, 40, speak=True)  # lazy imports and first-call caches, in every run
        if args.workload == "server":
            await server_sessions(2, 1, 5)
            gc.collect()
            gc.freeze()
            gc.disable()  # no collection lands in one run and not another
            await server_sessions(args.sessions, args.turns, args.chunks)
            return
        if args.gc == "frozen":
            gc.collect()
            gc.freeze()  # as a server does after start-up: the modules are never walked
        await sessions(
            args.sessions,
            args.chunks,
            speak=args.speak,
            pipeline=not args.bare,
            anyio_checkpoint=args.anyio_checkpoint,
        )

    anyio.run(main, backend=args.backend, backend_options=_options(args))


def _options(args: argparse.Namespace) -> dict[str, bool]:
    return {"use_uvloop": args.loop == "uvloop"} if args.backend == "asyncio" else {}


def instructions(args: argparse.Namespace, n: int, chunks: int, *extra: str) -> int:
    command = [
        "valgrind",
        "--tool=callgrind",
        "--callgrind-out-file=/dev/null",
        sys.executable,
        __file__,
        "--child",
        "--loop",
        args.loop,
        "--backend",
        args.backend,
        "--sessions",
        str(n),
        "--gc",
        args.gc,
        "--chunks",
        str(chunks),
        *(["--anyio-checkpoint"] if args.anyio_checkpoint else []),
        "--workload",
        args.workload,
        "--turns",
        str(args.turns),
        *extra,
    ]
    # The same string hashes in every run; and one OpenBLAS thread: NumPy's pool of
    # spinning threads added a different ±25M instructions to every run.
    env = {**os.environ, "PYTHONHASHSEED": "0", "OPENBLAS_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, check=True, env=env)
    match = re.search(r"Collected : (\d+)", done.stderr)
    if match is None:
        raise RuntimeError(done.stderr[-2000:])
    return int(match.group(1))


def cpu(args: argparse.Namespace) -> None:
    """The same split from CPU time, the least of ``--repeat`` runs of each."""
    n, c = args.sessions, args.chunks

    async def least(chunks: int, *, speak: bool = False) -> float:
        best = float("inf")
        for _ in range(args.repeat):
            gc.collect()
            start = time.thread_time()
            await sessions(n, chunks, speak=speak)
            best = min(best, time.thread_time() - start)
        return best

    async def main() -> None:
        await sessions(2, 40, speak=True)
        short, long = await least(c), await least(2 * c)
        spoken = await least(c, speak=True)
        per_chunk = (long - short) / (n * c)
        per_session = short / n - per_chunk * c
        per_reply = (spoken - short) / n
        all_in = per_chunk + (per_session + per_reply) / 225
        print(
            f"{_name(args)}, {n} sessions, CPU time (least of {args.repeat}): "
            f"per chunk {per_chunk * 1e6:.2f} µs, per session {per_session * 1e6:.0f} µs, "
            f"per reply {per_reply * 1e6:.0f} µs; 225 chunks and one reply: "
            f"{all_in * 1e6:.2f} µs per chunk all in"
        )

    anyio.run(main, backend=args.backend, backend_options=_options(args))


def collections(args: argparse.Namespace) -> None:
    """The collector's collections during speaking sessions, per generation: how many,
    how many objects each examined, how much garbage each found. Every chunk comes
    after a loop trip, not a timed sleep, so the counts do not move with the load."""
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from benchmarks.run import GCPauses

    async def main() -> None:
        await sessions(2, 40, speak=True)  # lazy imports and caches
        gc.collect()
        if args.gc == "frozen":
            gc.freeze()
        gc.set_threshold(args.gc_threshold, *gc.get_threshold()[1:])
        pauses = GCPauses(count_objects=True)
        gc.callbacks.append(pauses)
        try:
            await sessions(args.sessions, args.chunks, speak=True)
        finally:
            gc.callbacks.remove(pauses)
        print(
            f"{_name(args)}, {args.sessions} sessions of {args.chunks} chunks and one reply, "
            f"generation-0 threshold {args.gc_threshold}"
            f"{', collector frozen' if args.gc == 'frozen' else ''}:"
        )
        print(pauses.report())

    anyio.run(main, backend=args.backend, backend_options=_options(args))


def objects(args: argparse.Namespace) -> None:
    """Objects the garbage collector tracks per live session (silent, mid-way), and
    how many of them stay after a full collection (the rest is garbage it had to find)."""
    from voicepipe import AudioFormat, Pipeline
    from voicepipe.providers.fake import FakeLLM, FakeSTT, FakeTTS

    n = args.sessions
    silence = bytes(AudioFormat(16000, 1).bytes_for(20))

    async def main() -> None:
        await sessions(2, 40, speak=True)  # lazy imports and caches
        hold = anyio.Event()

        async def audio() -> AsyncIterator[bytes]:
            for i in range(20):
                if i == 10:
                    await hold.wait()
                yield silence

        async def session() -> None:
            p = Pipeline(stt=FakeSTT(["hello there"]), llm=FakeLLM(), tts=FakeTTS())
            async with p.run(audio()) as stream:
                async for _ in stream:
                    pass

        gc.collect()
        before = len(gc.get_objects())
        async with anyio.create_task_group() as tg:
            for _ in range(n):
                tg.start_soon(session)
            await anyio.wait_all_tasks_blocked()
            live = len(gc.get_objects())
            gc.collect()
            kept = len(gc.get_objects())
            hold.set()
        print(
            f"{_name(args)}, {n} live sessions: {(live - before) / n:.0f} objects tracked per "
            f"session, {(kept - before) / n:.0f} after a full collection"
        )

    anyio.run(main, backend=args.backend, backend_options=_options(args))


def server(args: argparse.Namespace) -> None:
    """The split of ``--workload server``: per chunk, per session, per turn and its reply."""
    n, c, turns = args.sessions, args.chunks, args.turns
    runs = {
        "empty": (0, 0, c),
        "short": (n, 0, c),
        "long": (n, 0, 2 * c),
        "spoken": (n, turns, 0),
        "silent": (n, 0, turns * TURN_CHUNKS),
    }
    counts = {}
    for name, (sessions, spoken, chunks) in runs.items():
        args.turns = spoken
        counts[name] = instructions(args, sessions, chunks)
    args.turns = turns
    per_chunk = (counts["long"] - counts["short"]) / (n * c)
    per_session = (counts["short"] - counts["empty"]) / n - per_chunk * c
    per_turn = (counts["spoken"] - counts["silent"]) / (n * turns)
    bench = TURN_CHUNKS * 3 * per_chunk + per_session + 3 * per_turn
    print(
        f"{_name(args)}, bench_server's sessions in process (the core's side: no socket, "
        f"no ASGI), {n} sessions, collector off, instructions: per 20 ms chunk "
        f"{per_chunk:,.0f}, per session (set-up and end) {per_session:,.0f}, per turn and "
        f"its reply {per_turn:,.0f}; a bench_server session of 3 turns "
        f"({3 * TURN_CHUNKS} chunks): {bench / 1e6:.2f}M"
    )


def _name(args: argparse.Namespace) -> str:
    return args.loop if args.backend == "asyncio" else "trio"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loop", choices=["asyncio", "uvloop"], default="uvloop")
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--chunks", type=int, default=200)
    parser.add_argument(
        "--gc",
        choices=["default", "frozen"],
        default="default",
        help="frozen: gc.freeze() before the sessions, as a server does (full collections "
        "then walk the sessions' objects only, not the imported modules)",
    )
    parser.add_argument("--cpu", action="store_true", help="CPU time instead of valgrind")
    parser.add_argument(
        "--anyio-checkpoint",
        action="store_true",
        help="the producer takes its loop trip with anyio.lowlevel.checkpoint (as before; it "
        "costs a backend lookup per chunk that no transport pays), not asyncio.sleep(0)",
    )
    parser.add_argument("--repeat", type=int, default=5, help="with --cpu: runs of each")
    parser.add_argument(
        "--objects", action="store_true", help="objects the GC tracks per live session"
    )
    parser.add_argument(
        "--collections",
        action="store_true",
        help="the collector's collections per generation during speaking sessions, e.g. "
        "--collections --sessions 1000 --chunks 225 --gc frozen",
    )
    parser.add_argument(
        "--gc-threshold", type=int, default=20000, help="with --collections (serve's: 20000)"
    )
    parser.add_argument(
        "--workload",
        choices=["sessions", "server"],
        default="sessions",
        help="server: bench_server.py's sessions in process (3 spoken turns answered "
        "'Sure.', paced, events to their wire form) split per chunk, per session and per "
        "turn (e.g. --workload server --sessions 20 --chunks 135)",
    )
    parser.add_argument("--turns", type=int, default=3, help="with --workload server")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--speak", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--bare", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    if args.cpu:
        cpu(args)
        return
    if args.objects:
        objects(args)
        return
    if args.collections:
        collections(args)
        return
    if args.workload == "server":
        server(args)
        return
    n, c = args.sessions, args.chunks
    empty = instructions(args, 0, c)
    bare = instructions(args, n, 2 * c, "--bare") - instructions(args, n, c, "--bare")
    short = instructions(args, n, c)
    long = instructions(args, n, 2 * c)
    spoken = instructions(args, n, c, "--speak")
    per_chunk = (long - short) / (n * c)
    per_session = (short - empty) / n - per_chunk * c
    per_reply = (spoken - short) / n
    all_in = per_chunk + (per_session + per_reply) / 225
    print(
        f"{_name(args)}{', collector frozen' if args.gc == 'frozen' else ''}, {n} sessions, "
        "instructions: "
        f"per chunk {per_chunk:,.0f} instructions (the bare producer {bare / (n * c):,.0f}), "
        f"per session {per_session:,.0f}, per reply {per_reply:,.0f}; "
        f"225 chunks and one reply: {all_in:,.0f} per chunk all in"
    )


if __name__ == "__main__":
    main()
