"""Load test of the example server: how many real-time sessions one server process holds.

N WebSocket clients on 127.0.0.1 stream audio in real time (20 ms chunks, paced)
to ``examples/server`` running on fake providers in a subprocess. Each client
speaks ``--turns`` times (400 ms of tone, then silence until the reply is over)
and measures, per turn, the **reply latency overhead**: from sending the chunk
that ends its turn (FakeSTT's 300 ms of silence) to the reply's first audio
frame, minus what the fakes take (``--llm-ttft`` + ``--tts-ttfb``). That is
the network, the server's queueing, the transport and the pipeline together.

For each N it prints p50/p99 overhead, the server's own figure (the pipeline's
``end_of_turn_to_first_audio_ms``), how late the clients' sends ran, the
server's memory per session (RSS at the peak minus before, over N), its share
of a core, and its **CPU time per client frame** (all of it: uvicorn, the
transport, the pipeline, FakeSTT, the replies; the figure that load on a shared
machine moves least). It stops at the first N whose p99 is over
``--target-ms`` (50; ``inf`` runs every N) and reports the largest N under it.
The server runs as ``voicepipe serve`` runs it (``gc.freeze()`` after startup,
its GC threshold, no permessage-deflate, the picows WebSocket layer; ``--ws``
picks another, ``--gc-threshold 0`` Python's default collector).

The clients (``--client picows``, the default) are one ``picows`` connection
per session driven by callbacks: each frame is sent from a loop timer set to
its due time (what ``anyio.sleep`` does underneath), masked and framed in C,
and a reply's first audio frame is timed in the socket's read callback. The
frames on the wire, their sizes, their pacing (every 20 ms per session,
starts spread over a second, a late frame sent at once) and what is measured
are the same as with ``--client websockets``, the client the figures before
it were taken with: a task per session, websockets' Python framing, replies
timed after its queue and a task wake-up. That client spent as much CPU per
frame as the server, and at 300-400 sessions on one core its own lag was
part of the measured overhead (send lag p99 of a second); the ``client
µs/frame`` column shows what the clients cost.

Run: ``python benchmarks/bench_server.py`` (small and quick, CI-safe). The
figures in ``docs/server.md``, the server alone on one core and the clients
on the other::

    taskset -c 0 python benchmarks/bench_server.py --cpu 1 \\
        --sessions 50,100,150,200,300,400 --turns 3 --target-ms inf

``--chunk-ms 100`` sends 100 ms frames instead of 20 ms ones; ``--profile
server.prof`` writes the server's cProfile (CPU time) for ``python -m pstats``.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import numpy as np
from picows import WSError, WSFrame, WSListener, WSMsgType, WSTransport, ws_connect
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from voicepipe.cli.serve import GC_THRESHOLD

ROOT = Path(__file__).resolve().parent.parent
RATE = 16000
SPEECH_MS = 400
END_OF_TURN_MS = 300  # FakeSTT ends a turn after 300 ms of silence


@dataclass(frozen=True)
class Chunks:
    """What a client sends, in chunks of ``ms`` milliseconds (a multiple of 20)."""

    ms: int

    @property
    def seconds(self) -> float:
        return self.ms / 1000

    @property
    def silence(self) -> bytes:
        return bytes(RATE * self.ms // 1000 * 2)

    @property
    def speech(self) -> bytes:
        t = np.arange(RATE * self.ms // 1000) / RATE
        return (5000 * np.sin(2 * np.pi * 300 * t)).astype("<i2").tobytes()

    def count(self, ms: int) -> int:
        return -(-ms // self.ms)


@dataclass(frozen=True)
class Load:
    """What every client does: ``turns`` turns in ``chunks``; the fakes take ``provider_s``."""

    turns: int
    chunks: Chunks
    provider_s: float


REPLY = "Sure."
TURN_TIMEOUT = 10.0


# -- the server, in a subprocess ----------------------------------------------------------


def serve(
    llm_ttft: float,
    tts_ttfb: float,
    ws: str,
    gc_threshold: int,
    profile: str | None = None,
    http: str = "auto",
) -> None:
    """Child process: the example server on fake providers; prints its port.

    With ``profile``, the server runs under cProfile and writes its stats there
    on SIGUSR1 (the parent sends it after the last step).
    """
    import uvicorn

    from voicepipe.cli.serve import PICOWS

    sys.path.insert(0, str(ROOT))
    from examples.server.app import Providers, create_app
    from examples.server.settings import ServerSettings
    from voicepipe.providers.fake import FakeLLM, FakeSTT, FakeTTS

    folder = tempfile.TemporaryDirectory(prefix="voicepipe-bench-")
    settings = ServerSettings(
        max_sessions=100_000,
        max_session_seconds=3600,
        max_audio_bytes=1 << 40,
        form_store=Path(folder.name) / "forms.db",
        gc_freeze=True,  # as `voicepipe serve` runs it
        gc_threshold=gc_threshold or None,
    )
    providers = Providers(
        FakeSTT(itertools.repeat("hello there")),
        FakeLLM(lambda messages: REPLY, ttft=llm_ttft),
        FakeTTS(ttfb=tts_ttfb),
        ("fake", "fake", "fake"),
    )
    app = create_app(settings, providers=providers)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(4096)  # clients may connect (and wait) from now on
    print(sock.getsockname()[1], flush=True)
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        ws=PICOWS if ws == "picows" else ws,
        http=http,
        ws_ping_interval=None,
        ws_per_message_deflate=False,  # as `voicepipe serve` runs it
        backlog=4096,
    )
    if profile:
        import cProfile
        import signal

        profiler = cProfile.Profile(time.thread_time)  # CPU time: the machine may be busy

        def dump(signum: int, frame: object) -> None:
            profiler.disable()
            profiler.dump_stats(profile)
            print("profile written", flush=True)

        signal.signal(signal.SIGUSR1, dump)
        profiler.enable()
    with folder:
        uvicorn.Server(config).run(sockets=[sock])


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


# -- the clients --------------------------------------------------------------------------


@dataclass
class Results:
    overhead_ms: list[float] = field(default_factory=list)
    server_ms: list[float] = field(default_factory=list)
    send_lag_ms: list[float] = field(default_factory=list)
    frames: int = 0
    missed: int = 0
    failed: int = 0


class Client:
    """One session: speak, wait in silence for the reply, repeat; measure each reply."""

    def __init__(self, ws: ClientConnection, results: Results, load: Load) -> None:
        self.ws = ws
        self.results = results
        self.load = load
        self.turn_ended_at: float | None = None
        self.replied = anyio.Event()

    async def receive(self) -> None:
        try:
            async for message in self.ws:
                if isinstance(message, bytes):
                    if self.turn_ended_at is not None:
                        waited = time.perf_counter() - self.turn_ended_at - self.load.provider_s
                        self.results.overhead_ms.append(waited * 1000)
                        self.turn_ended_at = None
                    continue
                event = json.loads(message)
                if event["type"] == "metrics" and event["end_of_turn_to_first_audio_ms"]:
                    self.results.server_ms.append(event["end_of_turn_to_first_audio_ms"])
                elif event["type"] == "assistant":
                    self.replied.set()
        except ConnectionClosed:
            pass

    async def speak(self) -> None:
        chunks = self.load.chunks
        speech, silence = chunks.speech, chunks.silence
        end_of_turn = chunks.count(END_OF_TURN_MS)
        clock = time.perf_counter()
        sent = 0

        async def send(chunk: bytes) -> float:
            nonlocal sent
            due = clock + sent * chunks.seconds
            await anyio.sleep(max(0.0, due - time.perf_counter()))
            now = time.perf_counter()
            self.results.send_lag_ms.append((now - due) * 1000)
            await self.ws.send(chunk)
            self.results.frames += 1
            sent += 1
            return now

        for _ in range(self.load.turns):
            self.replied = anyio.Event()
            for _ in range(chunks.count(SPEECH_MS)):
                await send(speech)
            for index in range(end_of_turn):
                at = await send(silence)
                if index == end_of_turn - 1:
                    self.turn_ended_at = at
            deadline = time.perf_counter() + TURN_TIMEOUT
            while not self.replied.is_set() and time.perf_counter() < deadline:
                await send(silence)
            if not self.replied.is_set():
                self.results.missed += 1
                self.turn_ended_at = None
            for _ in range(chunks.count(200)):  # a breath before the next turn
                await send(silence)
        await self.ws.send(json.dumps({"type": "stop"}))


async def run_client(address: str, load: Load, delay: float, results: Results) -> None:
    await anyio.sleep(delay)
    try:
        async with connect(
            f"ws://{address}/listen", proxy=None, compression=None, ping_interval=None
        ) as ws:
            client = Client(ws, results, load)
            async with anyio.create_task_group() as tg:
                tg.start_soon(client.receive)
                await client.speak()
    except (OSError, ConnectionClosed) as exc:
        results.failed += 1
        print(f"  client failed: {type(exc).__name__}: {exc}", file=sys.stderr)


class PacedSession(WSListener):
    """One session on picows: the same frames and pacing as :class:`Client`, in callbacks.

    Each send is a loop timer (``call_later`` to the frame's due time, as
    ``anyio.sleep`` is underneath), and picows masks and frames it in C; a
    reply's first audio frame is timed in the socket's callback, where the
    websockets client timed it after a queue and a task wake-up. No task per
    session, no coroutine per frame.
    """

    def __init__(self, results: Results, load: Load, done: asyncio.Future[None]) -> None:
        self.results = results
        self.load = load
        self.done = done
        self.loop = asyncio.get_running_loop()
        self.transport: WSTransport | None = None
        self.turn_ended_at: float | None = None
        self.replied = False
        self.clock = 0.0
        self.sent = 0
        self.script = self._script()

    def _script(self) -> Iterator[tuple[bytes, bool]]:
        """Every frame to send, in order, and whether it ends the turn (as Client.speak)."""
        chunks = self.load.chunks
        speech, silence = chunks.speech, chunks.silence
        end_of_turn = chunks.count(END_OF_TURN_MS)
        for _ in range(self.load.turns):
            self.replied = False
            for _ in range(chunks.count(SPEECH_MS)):
                yield speech, False
            for index in range(end_of_turn):
                yield silence, index == end_of_turn - 1
            deadline = time.perf_counter() + TURN_TIMEOUT
            while not self.replied and time.perf_counter() < deadline:
                yield silence, False
            if not self.replied:
                self.results.missed += 1
                self.turn_ended_at = None
            for _ in range(chunks.count(200)):  # a breath before the next turn
                yield silence, False

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport
        self.clock = time.perf_counter()
        self._tick()

    def _tick(self) -> None:
        transport = self.transport
        if transport is None or self.done.done():
            return
        due = self.clock + self.sent * self.load.chunks.seconds
        now = time.perf_counter()
        step = next(self.script, None)
        if step is None:
            transport.send(WSMsgType.TEXT, b'{"type": "stop"}')
            return
        self.results.send_lag_ms.append((now - due) * 1000)
        chunk, ends_turn = step
        transport.send(WSMsgType.BINARY, chunk)
        self.results.frames += 1
        self.sent += 1
        if ends_turn:
            self.turn_ended_at = now
        delay = self.clock + self.sent * self.load.chunks.seconds - time.perf_counter()
        self.loop.call_later(max(0.0, delay), self._tick)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        kind = frame.msg_type
        if kind is WSMsgType.BINARY:
            if self.turn_ended_at is not None:
                waited = time.perf_counter() - self.turn_ended_at - self.load.provider_s
                self.results.overhead_ms.append(waited * 1000)
                self.turn_ended_at = None
        elif kind is WSMsgType.TEXT:
            event = json.loads(frame.get_payload_as_bytes())
            if event["type"] == "metrics" and event["end_of_turn_to_first_audio_ms"]:
                self.results.server_ms.append(event["end_of_turn_to_first_audio_ms"])
            elif event["type"] == "assistant":
                self.replied = True
        elif kind is WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code())
            transport.disconnect()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.transport = None
        if not self.done.done():
            self.done.set_result(None)


async def run_paced(address: str, load: Load, delay: float, results: Results) -> None:
    await anyio.sleep(delay)
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    try:
        await ws_connect(
            lambda: PacedSession(results, load, done),
            f"ws://{address}/listen",
            websocket_handshake_timeout=10,
            max_frame_size=1 << 24,
        )
        await done
    except (OSError, WSError) as exc:  # TimeoutError is an OSError
        results.failed += 1
        print(f"  client failed: {type(exc).__name__}: {exc}", file=sys.stderr)


async def step(
    address: str,
    pid: int,
    n: int,
    load: Load,
    idle_kib: int,
    client: str = "picows",
    ramp: float = 1.0,
) -> dict[str, float]:
    """N clients at once; the figures of their replies, and the server's RSS over idle."""
    results = Results()
    peak = rss_kib(pid)
    cpu, own, wall = cpu_seconds(pid), time.process_time(), time.perf_counter()

    async def sample() -> None:
        nonlocal peak
        while True:
            peak = max(peak, rss_kib(pid))
            await anyio.sleep(0.2)

    async with anyio.create_task_group() as outer:
        outer.start_soon(sample)
        async with anyio.create_task_group() as clients:
            run = run_paced if client == "picows" else run_client
            for index in range(n):  # spread the starts over `ramp` seconds
                clients.start_soon(run, address, load, ramp * index / n, results)
        outer.cancel_scope.cancel()
    elapsed = time.perf_counter() - wall
    server_cpu = cpu_seconds(pid) - cpu
    cpu_share = server_cpu / elapsed
    client_share = (time.process_time() - own) / elapsed

    def pct(values: list[float], q: float) -> float:
        return float(np.percentile(values, q)) if values else float("nan")

    return {
        "sessions": n,
        "replies": len(results.overhead_ms),
        "missed": results.missed,
        "failed": results.failed,
        "p50_ms": pct(results.overhead_ms, 50),
        "p99_ms": pct(results.overhead_ms, 99),
        "server_p99_ms": pct(results.server_ms, 99),
        "send_lag_p99_ms": pct(results.send_lag_ms, 99),
        "kib_per_session": (peak - idle_kib) / n,
        "server_cpu": cpu_share,
        "server_us_per_frame": server_cpu / max(1, results.frames) * 1e6,
        "client_cpu": client_share,
        "client_us_per_frame": (time.process_time() - own) / max(1, results.frames) * 1e6,
    }


async def main(args: argparse.Namespace, address: str, pid: int) -> None:
    counts = [int(c) for c in args.sessions.split(",")]
    load = Load(args.turns, Chunks(args.chunk_ms), args.llm_ttft + args.tts_ttfb)
    await step(address, pid, 1, Load(1, load.chunks, load.provider_s), 0, args.client)  # warm-up
    idle = rss_kib(pid)
    print(f"server pid {pid}, idle RSS {idle / 1024:.1f} MiB")
    print(
        f"{'sessions':>8} {'replies':>7} {'missed':>6} {'p50 ms':>7} {'p99 ms':>7}"
        f" {'server p99':>10} {'send lag p99':>12} {'KiB/session':>11}"
        f" {'server CPU':>10} {'client CPU':>10} {'CPU µs/frame':>12} {'client µs/frame':>15}"
    )
    best: dict[str, float] | None = None
    started = time.perf_counter()
    for n in counts:
        if time.perf_counter() - started > args.max_seconds:
            print(f"(stopped: over the {args.max_seconds:g} s budget)")
            break
        row = await step(address, pid, n, load, idle, args.client, args.ramp_seconds)
        print(
            f"{n:>8} {row['replies']:>7.0f} {row['missed']:>6.0f} {row['p50_ms']:>7.1f}"
            f" {row['p99_ms']:>7.1f} {row['server_p99_ms']:>10.1f}"
            f" {row['send_lag_p99_ms']:>12.1f} {row['kib_per_session']:>11.0f}"
            f" {row['server_cpu']:>10.0%} {row['client_cpu']:>10.0%}"
            f" {row['server_us_per_frame']:>12.1f} {row['client_us_per_frame']:>15.1f}"
        )
        if row["missed"] or row["failed"] or not row["p99_ms"] < args.target_ms:
            break
        best = row
    if best is None:
        print(f"no step had p99 overhead under {args.target_ms:g} ms")
    else:
        print(
            f"most sessions with p99 reply overhead < {args.target_ms:g} ms: "
            f"{best['sessions']:.0f} (p99 {best['p99_ms']:.1f} ms); "
            f"memory per session {best['kib_per_session']:.0f} KiB"
        )


def bench(args: argparse.Namespace) -> None:
    """Start the server in a subprocess, load it, stop it."""
    flags = ["--llm-ttft", str(args.llm_ttft), "--tts-ttfb", str(args.tts_ttfb), "--ws", args.ws]
    flags += ["--gc-threshold", str(args.gc_threshold), "--http", args.http]
    if args.profile:
        flags += ["--profile", str(Path(args.profile).resolve())]
    command = [sys.executable, __file__, "--serve", *flags]
    if args.cpu is not None:
        command = ["taskset", "-c", args.cpu, *command]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=ROOT) as server:
        try:
            assert server.stdout is not None
            address = f"127.0.0.1:{int(server.stdout.readline())}"
            anyio.run(main, args, address, server.pid, backend_options={"use_uvloop": True})
            if args.profile:
                server.send_signal(signal.SIGUSR1)
                server.stdout.readline()  # "profile written"
                print(f"server profile: {args.profile} (python -m pstats)")
        finally:
            server.terminate()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", default="5,10", help="comma-separated N to try, rising")
    parser.add_argument("--turns", type=int, default=2, help="turns per session")
    parser.add_argument("--chunk-ms", type=int, default=20, help="audio per frame (20, 40, ...)")
    parser.add_argument("--target-ms", type=float, default=50.0, help="p99 overhead bound")
    parser.add_argument("--max-seconds", type=float, default=120.0, help="start no step after")
    parser.add_argument("--llm-ttft", type=float, default=0.0, help="FakeLLM first-token delay")
    parser.add_argument("--tts-ttfb", type=float, default=0.0, help="FakeTTS first-byte delay")
    parser.add_argument("--cpu", help="pin the server to these CPUs (taskset -c)")
    parser.add_argument("--profile", help="write the server's cProfile stats to this file")
    parser.add_argument(
        "--ws",
        default="picows",
        help="the server's WebSocket layer, as `voicepipe serve --ws` (picows, "
        "websockets-sansio, websockets, wsproto)",
    )
    parser.add_argument(
        "--gc-threshold",
        type=int,
        default=GC_THRESHOLD,
        help=f"the server's generation-0 GC threshold (voicepipe serve's: {GC_THRESHOLD}; "
        "0: Python's default, 700)",
    )
    parser.add_argument(
        "--http",
        choices=["auto", "h11", "httptools"],
        default="auto",
        help="uvicorn's HTTP parser (auto: httptools when installed, as voicepipe serve)",
    )
    parser.add_argument(
        "--ramp-seconds",
        type=float,
        default=1.0,
        help="spread the sessions' starts over this long (1: every figure so far); a "
        "session's connection and handshake cost the server as much as ~90 frames",
    )
    parser.add_argument(
        "--client",
        choices=["picows", "websockets"],
        default="picows",
        help="the clients' WebSocket library: picows (callbacks and loop timers, less CPU "
        "per frame) or websockets (a task per session; what the "
        "figures before this option were taken with)",
    )
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.serve:
        serve(
            arguments.llm_ttft,
            arguments.tts_ttfb,
            arguments.ws,
            arguments.gc_threshold,
            arguments.profile,
            arguments.http,
        )
    else:
        bench(arguments)
