"""``voicepipe serve`` as its own process on 127.0.0.1: settings checked up front, workers,
form sessions moving between server processes on PostgreSQL, and the graceful drain on
SIGTERM (refusal with 1012, /health 503, sessions finished with reason ``shutdown``)."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from typer.testing import CliRunner
from websockets.asyncio.client import connect

from tests.server_apps import ANSWERS, STORY
from tests.test_transport_websocket import Received, adrain
from tests.uvicorn_support import loopback
from voicepipe.cli import app as cli_app
from voicepipe.forms import SQLiteFormStore

ROOT = Path(__file__).parent.parent
FORMS = ROOT / "examples" / "forms"
DSN = os.environ.get("VOICEPIPE_TEST_POSTGRES_DSN")
STARTED = "Application startup complete."
LISTENING = "Uvicorn running on"

on_asyncio = pytest.mark.parametrize("anyio_backend", ["asyncio"])  # uvicorn's loop


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ServerProcess:
    """``voicepipe serve`` in a subprocess; its log lines collected as they come."""

    def __init__(self, proc: subprocess.Popen[str], port: int) -> None:
        self.proc = proc
        self.address = f"127.0.0.1:{port}"
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))

    def close(self) -> None:
        self._reader.join(5)
        if self.proc.stderr is not None:
            self.proc.stderr.close()

    @property
    def log(self) -> str:
        return "\n".join(self.lines)

    async def wait_for(self, text: str, count: int = 1) -> None:
        with anyio.fail_after(60):
            while sum(text in line for line in self.lines) < count:
                if self.proc.poll() is not None:
                    self._reader.join(5)
                    raise AssertionError(f"the server exited ({self.proc.returncode}):\n{self.log}")
                await anyio.sleep(0.05)

    async def health(self) -> httpx.Response:
        async with httpx.AsyncClient(trust_env=False) as http:
            return await http.get(f"http://{self.address}/health")

    async def idle(self) -> None:
        """Until no session runs here (each has released what it held, its form lease too)."""
        with anyio.fail_after(30):
            while (await self.health()).json()["sessions"]:  # noqa: ASYNC110 - another process
                await anyio.sleep(0.05)

    async def exited(self) -> int:
        with anyio.fail_after(60):
            while self.proc.poll() is None:  # noqa: ASYNC110 - a process, not a task
                await anyio.sleep(0.05)
        self._reader.join(5)
        return self.proc.returncode


def server_env(tmp_path: Path, **settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOICEPIPE_")}
    path = [str(ROOT), *filter(None, [env.get("PYTHONPATH")])]
    env["PYTHONPATH"] = os.pathsep.join(path)  # tests.server_apps, here and in the workers
    env["VOICEPIPE_FORMS_DIR"] = str(FORMS)
    env["VOICEPIPE_FORM_STORE"] = str(tmp_path / "forms.db")
    env["VOICEPIPE_REALTIME_LEAD"] = "0"
    env.update({f"VOICEPIPE_{k.upper()}": v for k, v in settings.items()})
    return env


def start_server(
    tmp_path: Path, args: tuple[str, ...], workers: int, settings: dict[str, str]
) -> ServerProcess:
    port = free_port()
    command = [sys.executable, "-m", "voicepipe.cli", "serve", "--port", str(port)]
    command += ["--app", "tests.server_apps:fakes_app", "--workers", str(workers), *args]
    proc = subprocess.Popen(
        command,
        cwd=tmp_path,  # no developer's .env
        env=server_env(tmp_path, **settings),
        stdout=subprocess.DEVNULL,  # the access log
        stderr=subprocess.PIPE,
        text=True,
    )
    return ServerProcess(proc, port)


@asynccontextmanager
async def voicepipe_serve(
    tmp_path: Path, *args: str, workers: int = 1, settings: dict[str, str] | None = None
) -> AsyncIterator[ServerProcess]:
    """``voicepipe serve --app tests.server_apps:fakes_app`` until all workers started."""
    server = start_server(tmp_path, args, workers, settings or {})
    proc = server.proc
    try:
        await server.wait_for(STARTED, count=workers)
        # With one worker, uvicorn logs the startup *before* it binds the port: a client
        # that connected right then was refused (the flake under load). This line comes
        # once the socket listens, whatever the number of workers.
        await server.wait_for(LISTENING)
        yield server
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        server.close()


async def recv_event(ws: Any, kind: str, got: Received) -> dict[str, Any]:
    """Read frames into ``got`` until an event of type ``kind``; return it."""
    with anyio.fail_after(30):
        while True:
            frame = await ws.recv()
            got.add(frame)
            if not isinstance(frame, bytes) and got.frames[-1] == kind:
                return got.events[-1]


async def say(ws: Any, text: str) -> None:
    await ws.send(json.dumps({"type": "text", "content": text}))


# -- the command --------------------------------------------------------------------------


@contextmanager
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No VOICEPIPE_* setting or .env of the developer's; and ``serve``, which writes its
    settings into the environment for its workers, leaves none behind."""
    for name in [n for n in os.environ if n.startswith("VOICEPIPE_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    saved = dict(os.environ)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def test_serve_checks_its_settings_before_starting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner = CliRunner()
    with clean_env(monkeypatch, tmp_path):
        monkeypatch.setenv("VOICEPIPE_MAX_SESSIONS", "0")
        bad = runner.invoke(cli_app, ["serve"])
        monkeypatch.delenv("VOICEPIPE_MAX_SESSIONS")
        missing = runner.invoke(cli_app, ["serve", "--env-file", "nope.env"])
        no_forms = runner.invoke(cli_app, ["serve", "--forms-dir", "nowhere"])
        bad_ws = runner.invoke(cli_app, ["serve", "--ws", "carrier-pigeon"])
        monkeypatch.setenv("VOICEPIPE_STT", "nonsense")
        provider = runner.invoke(cli_app, ["serve"])
    assert bad.exit_code == 2
    assert "bad server settings: VOICEPIPE_MAX_SESSIONS:" in bad.stderr
    assert (missing.exit_code, missing.stderr.strip()) == (
        2,
        "voicepipe: error: nope.env: no such file",
    )
    assert (no_forms.exit_code, no_forms.stderr.strip()) == (
        2,
        "voicepipe: error: nowhere: no such folder",
    )
    assert (bad_ws.exit_code, bad_ws.stderr.strip()) == (
        2,
        "voicepipe: error: --ws carrier-pigeon: use one of picows, websockets-sansio, "
        "websockets, wsproto",
    )
    assert provider.exit_code == 2 and "VOICEPIPE_STT" in provider.stderr


def test_serve_has_the_websocket_layer_refuse_frames_over_the_apps_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The layer refuses them at their header (1009), before buffering them: picows's read
    # buffer never shrinks after a big frame (test_server_ws_hostile.py:
    # test_a_frame_over_ws_max_size_is_refused_at_its_header_and_never_buffered).
    import uvicorn

    ran: list[dict[str, Any]] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: ran.append(options))
    with clean_env(monkeypatch, tmp_path):
        for name in ("STT", "LLM", "TTS"):
            monkeypatch.setenv(f"VOICEPIPE_{name}", "fake")
        monkeypatch.setenv("VOICEPIPE_MAX_FRAME_BYTES", "65536")
        result = CliRunner().invoke(cli_app, ["serve"])
    assert result.exit_code == 0, result.stderr
    assert [options["ws_max_size"] for options in ran] == [65536]


def test_workers_share_one_session_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a configured secret, ``serve`` makes one for all its workers (a form session
    id one issued resumes on the others); a configured one, even from .env, is kept."""
    from voicepipe.cli.serve import _apply_settings

    with clean_env(monkeypatch, tmp_path):
        _apply_settings(None, None, None)
        made = os.environ["VOICEPIPE_SESSION_SECRET"]
        monkeypatch.delenv("VOICEPIPE_SESSION_SECRET")
        _apply_settings(None, None, None)
        again = os.environ["VOICEPIPE_SESSION_SECRET"]
        monkeypatch.delenv("VOICEPIPE_SESSION_SECRET")
        (tmp_path / ".env").write_text("VOICEPIPE_SESSION_SECRET=from-the-env-file\n")
        _apply_settings(None, None, None)
        kept = os.environ.get("VOICEPIPE_SESSION_SECRET")
    assert len(made) >= 32 and made != again  # random, per `serve`
    assert kept is None  # the workers read the .env file's own


def test_serve_freezes_startup_objects_out_of_the_collectors_way(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from voicepipe.cli.serve import _apply_settings
    from voicepipe.server import ServerSettings

    with clean_env(monkeypatch, tmp_path):
        default = ServerSettings().gc_freeze
        _apply_settings(None, None, None)
        served = ServerSettings().gc_freeze
        monkeypatch.setenv("VOICEPIPE_GC_FREEZE", "0")
        _apply_settings(None, None, None)
        told = ServerSettings().gc_freeze
    assert (default, served, told) == (False, True, False)


def test_serve_raises_the_collectors_threshold(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from voicepipe.cli.serve import GC_THRESHOLD, _apply_settings
    from voicepipe.server import ServerSettings

    with clean_env(monkeypatch, tmp_path):
        default = ServerSettings().gc_threshold
        _apply_settings(None, None, None)
        served = ServerSettings().gc_threshold
        monkeypatch.setenv("VOICEPIPE_GC_THRESHOLD", "5000")
        _apply_settings(None, None, None)
        told = ServerSettings().gc_threshold
    assert (default, served, told) == (None, GC_THRESHOLD, 5000)


@pytest.mark.anyio
@on_asyncio
async def test_serve_runs_the_page_and_sessions_on_two_workers(tmp_path: Path) -> None:
    (tmp_path / "my.env").write_text("VOICEPIPE_MAX_SESSIONS=7\n")
    async with voicepipe_serve(tmp_path, "--env-file", "my.env", workers=2) as server:
        health = await server.health()
        async with httpx.AsyncClient(trust_env=False) as http:
            page = await http.get(f"http://{server.address}/")
            script = await http.get(f"http://{server.address}/static/app.js")
        async with loopback(server.address, "/listen?mode=text") as ws:
            got = Received()
            await say(ws, "hello")
            reply = await recv_event(ws, "assistant", got)
        url = f"ws://{server.address}/listen?mode=text"
        async with connect(url, proxy=None, compression="deflate") as offering:
            assert offering.response is not None
            extensions = offering.response.headers.get("Sec-WebSocket-Extensions")
        server.proc.send_signal(signal.SIGTERM)
        code = await server.exited()
    pids = set(re.findall(r"Started server process \[(\d+)\]", server.log))
    assert len(pids) == 2  # two worker processes on the one socket
    assert health.status_code == 200
    assert health.json()["max_sessions"] == 7  # from --env-file
    assert health.json()["forms"] == ["intake"]
    assert page.status_code == 200 and "<script" in page.text
    assert script.status_code == 200 and "new WebSocket(" in script.text
    assert reply["content"] == STORY.strip()
    assert extensions is None  # permessage-deflate offered, and declined
    assert code == 0  # the parent drained its workers and exited


# -- PostgreSQL: a form session on any worker ---------------------------------------------


@pytest.mark.anyio
@on_asyncio
@pytest.mark.postgres
@pytest.mark.skipif(DSN is None, reason="set VOICEPIPE_TEST_POSTGRES_DSN")
async def test_a_form_session_moves_between_server_processes_on_postgres(
    tmp_path: Path,
) -> None:
    assert DSN is not None
    schema = f"serve_{uuid.uuid4().hex[:10]}"
    # Two hosts: one database, one secret to sign the form session ids.
    settings = {"form_store_dsn": DSN, "form_store_schema": schema, "session_secret": "s" * 32}
    async with (
        voicepipe_serve(tmp_path, settings=settings) as one,
        voicepipe_serve(tmp_path, settings=settings) as two,
    ):
        first, busy, second = Received(), Received(), Received()
        async with loopback(one.address, "/forms/intake?mode=text") as ws:
            session = (await recv_event(ws, "session", first))["session_id"]
            path = f"/forms/intake?mode=text&session={session}"
            await recv_event(ws, "assistant", first)  # greeting and first question
            await say(ws, "I am 42")
            await recv_event(ws, "form_progress", first)
            await recv_event(ws, "assistant", first)  # the next question
            # The same session on the other process, while this one holds it: refused.
            async with loopback(two.address, path) as other:
                await adrain(other, busy)
            await ws.send(json.dumps({"type": "stop"}))
            await adrain(ws, first)
        await one.idle()
        # The caller comes back on the other process: the session goes on where it was.
        async with loopback(two.address, path) as ws:
            opening = await recv_event(ws, "assistant", second)
            for text in ["ana@example.com", "yes", "415 555 0100", "yes"]:  # both read back
                await say(ws, text)
            await adrain(ws, second)
    await _drop_schema(schema)
    assert [e["field"] for e in first.of("form_progress")] == ["age"]
    assert first.of("finish")[0]["reason"] == "end_of_input"
    assert busy.of("finish")[0]["reason"] == "session_busy"
    assert "e-mail" in opening["content"]  # asks the next unanswered field, not the age again
    assert [e["field"] for e in second.of("form_progress")] == ["email", "phone"]
    assert second.of("form_complete")[0]["answers"] == ANSWERS
    assert (second.code, second.reason) == (1000, "form_complete")


async def _drop_schema(schema: str) -> None:
    asyncpg = pytest.importorskip("asyncpg")
    conn = await asyncpg.connect(DSN)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


# -- the drain on SIGTERM -------------------------------------------------------------------


@pytest.mark.anyio
@on_asyncio
async def test_sigterm_drains_sessions_and_refuses_new_ones(tmp_path: Path) -> None:
    async with voicepipe_serve(tmp_path, "--drain-seconds", "10") as server:
        talk, form, late = Received(), Received(), Received()
        async with (
            loopback(server.address, "/listen?mode=text") as ws,
            loopback(server.address, "/forms/intake?mode=text") as fws,
        ):
            session = (await recv_event(fws, "session", form))["session_id"]
            await recv_event(fws, "assistant", form)
            await say(fws, "I am 42")
            await recv_event(fws, "form_progress", form)
            await recv_event(fws, "assistant", form)
            await say(ws, "tell me a story")
            await recv_event(ws, "assistant_delta", talk)  # the reply has begun
            server.proc.send_signal(signal.SIGTERM)
            await server.wait_for("draining")
            health = await server.health()
            async with loopback(server.address, "/listen") as refused:
                await adrain(refused, late)
            await adrain(ws, talk)
            await adrain(fws, form)
        code = await server.exited()
    assert health.status_code == 503 and health.json()["status"] == "draining"
    assert late.frames == []
    assert (late.code, late.reason) == (1012, "server restarting: reconnect to continue")
    assert talk.of("assistant")[0] == {
        "type": "assistant",
        "content": STORY.strip(),
        "interrupted": False,
    }
    assert talk.frames[-2:] == ["metrics", "finish"]
    assert talk.of("finish")[0]["reason"] == "shutdown"
    assert (talk.code, talk.reason) == (1001, "shutdown")
    assert form.of("finish")[0]["reason"] == "shutdown"
    assert (form.code, form.reason) == (1001, "shutdown")
    assert code in (0, -signal.SIGTERM), server.log  # uvicorn re-raises SIGTERM once shut down
    assert "drained: every session has ended" in server.log

    async with SQLiteFormStore(tmp_path / "forms.db") as store:
        record = await store.get(session)
        claimed = await store.claim(session, form="intake", language="en", owner="next-call")
    assert record is not None and record.status == "in_progress"
    assert {name: a.value for name, a in record.answers.items()} == {"age": 42}
    assert claimed.session_id == session  # the lease was released: the caller can resume
