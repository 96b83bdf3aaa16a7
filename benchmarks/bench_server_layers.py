"""Where a server's time per audio frame goes: the same load on four servers, layer by layer.

N clients stream 20 ms frames of silence in real time (no turn, no reply) to a
uvicorn server in a subprocess that is, by ``--layer``:

* ``bare``: a plain ASGI app that receives and drops each frame (uvicorn's
  ``websockets-sansio`` protocol, the ASGI queue, one task wake-up);
* ``starlette``: the same through Starlette's ``WebSocket``;
* ``transport``: voicepipe's server (``voicepipe.server.create_app``: the
  transport core, the dialect, the pipeline) with an STT that drops the audio;
* ``full``: the same with ``FakeSTT`` and the turn taking, as in ``bench_server.py``.

It prints the server's CPU time per frame and, with ``--callgrind`` (valgrind
installed; use one session: the server runs ~50× slower), its instructions per
frame, counted only while the clients stream: the figure that a busy machine
does not move. Run ``python benchmarks/bench_server_layers.py --layer full
--sessions 1 --seconds 8 --callgrind`` for each layer, and ``--sessions 1
--connections 20 --seconds 0.1 --callgrind`` for what a session's connecting
and closing costs (20 sessions of 5 frames, one after another).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterable
from pathlib import Path
from typing import Any

from voicepipe.cli.serve import GC_THRESHOLD

ROOT = Path(__file__).resolve().parent.parent
FRAME = bytes(640)  # 20 ms of 16 kHz PCM16 silence
SPEECH = b"\x00\x40" * 320  # 20 ms of a loud square-ish signal: FakeSTT hears speech


def bare_app() -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        await receive()
        await send({"type": "websocket.accept"})
        while (await receive())["type"] != "websocket.disconnect":
            pass

    return app


def starlette_app() -> Any:
    from starlette.applications import Starlette
    from starlette.routing import WebSocketRoute
    from starlette.websockets import WebSocket

    async def endpoint(websocket: WebSocket) -> None:
        await websocket.accept()
        while (await websocket.receive())["type"] != "websocket.disconnect":
            pass

    return Starlette(routes=[WebSocketRoute("/listen", endpoint)])


def voicepipe_app(layer: str, gc_threshold: int) -> Any:
    from voicepipe.audio import AudioFormat
    from voicepipe.providers.base import Emit
    from voicepipe.providers.fake import FakeLLM, FakeSTT, FakeTTS
    from voicepipe.server import Providers, ServerSettings, create_app

    class DropSTT:
        async def transcribe(
            self, audio: AsyncIterable[bytes], format: AudioFormat, emit: Emit
        ) -> None:
            async for _ in audio:
                pass

    stt: Any = FakeSTT(itertools.repeat("hello")) if layer == "full" else DropSTT()
    settings = ServerSettings(
        max_sessions=100_000,
        max_session_seconds=3600,
        max_audio_bytes=1 << 40,
        form_store=Path(tempfile.mkdtemp(prefix="voicepipe-layers-")) / "forms.db",
        gc_freeze=True,
        gc_threshold=gc_threshold or None,
    )
    providers = Providers(stt, FakeLLM(["Sure."]), FakeTTS(), ("fake",) * 3)
    return create_app(settings, providers=providers)


def serve(args: argparse.Namespace) -> None:
    """Child process: the server of ``args.serve`` on ``args.server`` (its WebSocket layer
    ``args.ws``); prints its port. SIGUSR2 starts counting the collector's work, SIGUSR1
    prints it (and writes the profile)."""
    layer, ws, server, loop, profile = args.serve, args.ws, args.server, args.loop, args.profile
    if layer == "bare":
        app = bare_app()
    elif layer == "starlette":
        app = starlette_app()
    else:
        app = voicepipe_app(layer, args.gc_threshold)
    if server == "granian":
        serve_granian(app)
        return
    import uvicorn

    from voicepipe.cli.serve import PICOWS

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(4096)
    print(sock.getsockname()[1], flush=True)
    config = uvicorn.Config(
        app,
        log_level="warning",
        ws=PICOWS if ws == "picows" else ws,
        http=args.http,
        loop=loop,
        ws_ping_interval=None,
        ws_per_message_deflate=False,
    )
    import cProfile

    profiler = cProfile.Profile(time.thread_time)  # CPU time: the machine may be busy
    collections = [0, 0, 0]
    gc_time = [0.0, 0.0, 0.0]  # CPU seconds in collections, the current one's start, the longest

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            gc_time[1] = time.thread_time()
        else:
            collections[info["generation"]] += 1
            pause = time.thread_time() - gc_time[1]
            gc_time[0] += pause
            gc_time[2] = max(gc_time[2], pause)

    def count(signum: int, frame: object) -> None:
        collections[:] = [0, 0, 0]
        gc_time[0] = gc_time[2] = 0.0
        if profile:
            profiler.enable()  # the measured load only, not startup or the warm-up

    def report(signum: int, frame: object) -> None:
        if profile:
            profiler.disable()
            profiler.dump_stats(profile)
        counts = " ".join(map(str, collections))
        print(f"gc {counts} {gc_time[0]} {gc_time[2]}", flush=True)

    gc.callbacks.append(on_gc)
    signal.signal(signal.SIGUSR2, count)  # the parent's, as the load starts
    signal.signal(signal.SIGUSR1, report)  # the parent's, after the load
    uvicorn.Server(config).run(sockets=[sock])


def serve_granian(app: Any) -> None:
    """The same app under granian's embedded server (its own Rust WebSocket layer)."""
    from granian.constants import Interfaces
    from granian.server.embed import Server

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    print(port, flush=True)
    server = Server(
        app, address="127.0.0.1", port=port, interface=Interfaces.ASGI, log_enabled=False
    )
    asyncio.run(server.serve())


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def client(
    port: int, seconds: float, delay: float, sent: list[int], turn_every: float = 0.0
) -> None:
    """Stream frames in real time for ``seconds`` (with ``turn_every``, 400 ms of tone
    that often: a turn, and a reply), reading whatever the server sends."""
    from websockets.asyncio.client import connect

    await asyncio.sleep(delay)
    url = f"ws://127.0.0.1:{port}/listen"
    period = round(turn_every / 0.02) if turn_every else 0
    async with connect(url, proxy=None, compression=None, ping_interval=None) as ws:
        reader = asyncio.ensure_future(drain(ws))
        start = time.perf_counter()
        count = 0
        while time.perf_counter() - start < seconds:
            count += 1
            await asyncio.sleep(max(0.0, start + count * 0.02 - time.perf_counter()))
            await ws.send(SPEECH if period and count % period < 20 else FRAME)
            sent[0] += 1
        reader.cancel()


async def drain(ws: Any) -> None:
    async for _ in ws:
        pass


async def load(port: int, pid: int, args: argparse.Namespace) -> tuple[int, float]:
    n = args.sessions
    warm = [0]
    await asyncio.gather(*(client(port, 1.0, i / n, warm) for i in range(n)))
    if args.callgrind:
        callgrind_control(pid, "-i", "on")  # count from here (the clients are idle)
    sent = [0]
    os.kill(pid, signal.SIGUSR2)  # the server counts its collections from here
    before = cpu_seconds(pid)
    every, count = args.turn_every, args.connections

    async def one_after_another(delay: float) -> None:
        await asyncio.sleep(delay)
        for _ in range(count):
            await client(port, args.seconds, 0.0, sent, every)

    await asyncio.gather(*(one_after_another(i / n) for i in range(n)))
    cpu = cpu_seconds(pid) - before
    if args.callgrind:
        callgrind_control(pid, "-i", "off")  # the count is written when the server exits
    return sent[0], cpu


def callgrind_control(pid: int, *args: str) -> None:
    subprocess.run(["callgrind_control", *args, str(pid)], capture_output=True, check=False)


def instructions(out: Path) -> int:
    """The instructions counted while instrumentation was on (written at the server's exit)."""
    for line in out.read_text().splitlines():
        if line.startswith("totals:"):
            return int(line.split()[1])
    return 0


def main(args: argparse.Namespace) -> None:
    command = [sys.executable, __file__, "--serve", args.layer, "--ws", args.ws]
    command += ["--server", args.server, "--loop", args.loop, "--http", args.http]
    command += ["--gc-threshold", str(args.gc_threshold)]
    if args.profile:
        command += ["--profile", str(Path(args.profile).resolve())]
    out = Path(tempfile.mkdtemp(prefix="voicepipe-callgrind-")) / "server.out"
    if args.callgrind:
        valgrind = ["valgrind", "--tool=callgrind", "--instr-atstart=no"]
        command = [*valgrind, f"--callgrind-out-file={out}", *command]
    paths = [str(ROOT / "src"), str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env
    ) as server:
        try:
            assert server.stdout is not None
            port = int(server.stdout.readline())
            frames, cpu = asyncio.run(load(port, server.pid, args))
            gc_line = ["gc", "0", "0", "0", "0", "0"]
            if args.server == "uvicorn":
                server.send_signal(signal.SIGUSR1)
                gc_line = server.stdout.readline().split()  # after the profile is written
        finally:
            server.terminate()
            server.wait()
    line = f"{args.layer:>9} ({args.server}, {args.ws}, loop {args.loop}): "
    line += f"{args.sessions} sessions, {frames} frames, "
    line += f"server CPU {cpu / frames * 1e6:.1f} µs/frame"
    if args.callgrind:
        counted = instructions(out)
        line += f", {counted / frames / 1000:.1f}k instructions/frame"
        line += f" ({counted / (args.sessions * args.connections) / 1e6:.2f}M a session)"
    gens = "/".join(gc_line[1:4])
    line += f"; GC: {gens} collections (generation 0/1/2), "
    line += f"{float(gc_line[4]) / frames * 1e6:.2f} µs/frame, "
    line += f"the longest {float(gc_line[5]) * 1e3:.1f} ms"
    print(line)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    layers = ["bare", "starlette", "transport", "full"]
    parser.add_argument("--layer", choices=layers, default="full")
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument(
        "--connections",
        type=int,
        default=1,
        help="sessions each client opens, one after another (--seconds each): with a short "
        "--seconds, what a session's connecting and closing costs",
    )
    parser.add_argument("--callgrind", action="store_true", help="count instructions")
    parser.add_argument(
        "--turn-every",
        type=float,
        default=0.0,
        help="seconds between the clients' turns (400 ms of sound each; the full layer "
        "replies to each): the reply path's cost too",
    )
    parser.add_argument(
        "--ws",
        default="picows",
        help="uvicorn's WebSocket layer: picows (voicepipe serve's), websockets-sansio "
        "(uvicorn's default), websockets, wsproto",
    )
    parser.add_argument("--server", choices=["uvicorn", "granian"], default="uvicorn")
    parser.add_argument("--loop", choices=["auto", "asyncio", "uvloop"], default="auto")
    parser.add_argument(
        "--http",
        choices=["auto", "h11", "httptools"],
        default="auto",
        help="uvicorn's HTTP parser (auto: httptools when installed, as voicepipe serve)",
    )
    parser.add_argument("--profile", help="write the server's cProfile stats to this file")
    parser.add_argument(
        "--gc-threshold",
        type=int,
        default=GC_THRESHOLD,
        help=f"the server's generation-0 GC threshold (voicepipe serve's: {GC_THRESHOLD}; "
        "0: Python's default, 700)",
    )
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.serve:
        serve(arguments)
    else:
        main(arguments)
