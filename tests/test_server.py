"""The server (voicepipe.server, and examples/server its thin user): page, health, the
/listen and /forms/{name} sessions, and its guards (origin, token, concurrency, budgets),
through the TestClient and through a real ``websockets`` client against uvicorn on
127.0.0.1."""

from __future__ import annotations

import gc
import itertools
import json
import logging
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from fastapi import FastAPI
from websockets.typing import Origin

from tests.support import FORMAT, silence, utterance
from tests.test_transport_websocket import (
    Fakes,
    Received,
    TestClient,
    adrain,
    drain,
    send_audio,
    serve_on_loopback,
    stop,
)
from tests.uvicorn_support import loopback
from voicepipe.audio import chunk_pcm
from voicepipe.forms import SQLiteFormStore
from voicepipe.providers.fake import FakeLLM, FakeSTT, FakeTTS
from voicepipe.server import Providers, RedactToken, ServerSettings, VoiceServer, create_app
from voicepipe.server.security import LOCAL_HOSTS

ROOT = Path(__file__).parent.parent
FORMS = ROOT / "examples" / "forms"
TOKEN = "s3cret-t0ken"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No VOICEPIPE_* setting or .env of the developer's leaks into these tests."""
    for name in list(os.environ):
        if name.startswith("VOICEPIPE_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # no .env here


def fake_providers(replies: list[str] | None = None, **llm: Any) -> Fakes:
    return Fakes(FakeSTT(itertools.repeat("hello there")), FakeLLM(replies, **llm), FakeTTS())


def make_app(tmp_path: Path, f: Fakes, **settings: Any) -> FastAPI:
    settings.setdefault("realtime_lead", 0)
    settings.setdefault("allowed_hosts", ("testserver", *LOCAL_HOSTS))  # the TestClient's Host
    settings.setdefault("forms_dir", FORMS)
    config = ServerSettings(form_store=tmp_path / "forms.db", **settings)
    return create_app(config, providers=Providers(f.stt, f.llm, f.tts, ("fake", "fake", "fake")))


def server_of(app: FastAPI) -> VoiceServer:
    server: VoiceServer = app.state.server
    return server


def talk(client: TestClient, path: str = "/listen", **kwargs: Any) -> Received:
    """One turn of conversation; what came back."""
    with client.websocket_connect(path, **kwargs) as ws:
        send_audio(ws, utterance())
        stop(ws)
        return drain(ws)


def refused(client: TestClient, path: str = "/listen", **kwargs: Any) -> Received:
    with client.websocket_connect(path, **kwargs) as ws:
        return drain(ws)


# -- the page and health ---------------------------------------------------------------


def test_page_static_files_and_health(tmp_path: Path) -> None:
    app = make_app(tmp_path, fake_providers(), access_token=TOKEN)
    with TestClient(app) as client:
        page = client.get("/")
        app_js = client.get("/static/app.js")
        worklet = client.get("/static/worklet.js")
        health = client.get("/health")
        favicon = client.get("/favicon.ico")
    assert favicon.status_code == 204  # the browser asks on every page load: not a 404
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert '<script src="/static/app.js"></script>' in page.text
    assert app_js.status_code == 200 and "new WebSocket(" in app_js.text
    assert worklet.status_code == 200 and 'registerProcessor("pcm-capture"' in worklet.text
    assert health.json() == {
        "status": "ok",
        "sessions": 0,
        "max_sessions": 50,
        "providers": {"stt": "fake", "llm": "fake", "tts": "fake"},
        "forms": ["intake"],
    }
    for response in (page, app_js, worklet, health):
        assert TOKEN not in response.text


# -- /listen ---------------------------------------------------------------------------


def test_conversation_on_listen(tmp_path: Path) -> None:
    f = fake_providers(["Hello! How can I help?"])
    with TestClient(make_app(tmp_path, f)) as client:
        got = talk(client)
        assert client.get("/health").json()["sessions"] == 0
    assert got.frames[0] == "session"
    assert got.of("user_turn")[0]["content"] == "hello there"
    assert got.of("assistant")[0]["content"] == "Hello! How can I help?"
    assert got.frames[-3:] == ["assistant", "metrics", "finish"]
    assert len(got.audio) == sum(f.tts.audio_bytes(t) for t in f.tts.texts)
    assert (got.code, got.reason) == (1000, "end_of_input")
    assert f.all_closed


def test_bad_json_gets_an_error_and_the_session_goes_on(tmp_path: Path) -> None:
    f = fake_providers(["Fine."])
    with TestClient(make_app(tmp_path, f)) as client, client.websocket_connect("/listen") as ws:
        ws.send_text("{oops")
        ws.send_text(json.dumps({"type": "shout"}))
        send_audio(ws, utterance())
        stop(ws)
        got = drain(ws)
    assert [e.split(":")[0] for e in got.errors] == [
        "control message is not valid JSON",
        "unknown control message type 'shout'; expected one of start, stop, text, end_turn",
    ]
    assert got.of("assistant")[0]["content"] == "Fine."
    assert got.code == 1000


def test_oversize_frame_closes_with_1009(tmp_path: Path) -> None:
    f = fake_providers()
    app = make_app(tmp_path, f, max_frame_bytes=2048)
    with TestClient(app) as client, client.websocket_connect("/listen") as ws:
        ws.send_bytes(bytes(4096))
        got = drain(ws)
    assert got.frames == ["session"]
    assert (got.code, got.reason) == (1009, "frame of 4096 bytes is over the 2048-byte limit")
    assert f.all_closed


@pytest.mark.parametrize(
    ("allowed", "origin", "admitted"),
    [
        ((), None, True),  # not a browser: the token is what guards it
        ((), "http://testserver", True),  # the server's own page
        ((), "https://evil.example", False),
        (("https://app.example",), "https://app.example", True),
        (("https://app.example",), "https://APP.example/", True),
        (("https://app.example",), "https://evil.example", False),
        (("*",), "https://anywhere.example", True),
    ],
)
def test_origin_check(
    tmp_path: Path, allowed: tuple[str, ...], origin: str | None, admitted: bool
) -> None:
    app = make_app(tmp_path, fake_providers(["Hi."]), allowed_origins=allowed)
    headers = {"origin": origin} if origin else {}
    with TestClient(app) as client:
        got = talk(client, headers=headers) if admitted else refused(client, headers=headers)
    if admitted:
        assert got.code == 1000 and got.of("assistant")
    else:
        assert got.frames == []
        assert (got.code, got.reason) == (1008, f"origin {origin} is not allowed")


@pytest.mark.parametrize(
    ("query", "headers", "admitted"),
    [
        ("", {}, False),
        ("?token=wrong", {}, False),
        (f"?token={TOKEN}", {}, True),
        ("", {"authorization": f"Bearer {TOKEN}"}, True),
        ("", {"authorization": "Bearer wrong"}, False),
        (f"?token={TOKEN}", {"authorization": "Bearer wrong"}, False),  # the header wins
    ],
)
def test_access_token(tmp_path: Path, query: str, headers: dict[str, str], admitted: bool) -> None:
    app = make_app(tmp_path, fake_providers(["Hi."]), access_token=TOKEN)
    with TestClient(app) as client:
        path = f"/listen{query}"
        got = (
            talk(client, path, headers=headers)
            if admitted
            else refused(client, path, headers=headers)
        )
    if admitted:
        assert got.code == 1000 and got.of("assistant")
    else:
        assert (got.code, got.reason) == (1008, "missing or wrong access token")


def test_session_budgets_come_from_the_settings(tmp_path: Path) -> None:
    f = fake_providers()
    app = make_app(tmp_path, f, max_audio_bytes=FORMAT.bytes_for(100))
    with TestClient(app) as client, client.websocket_connect("/listen") as ws:
        send_audio(ws, utterance())
        got = drain(ws)
    assert got.errors == ["the session used up its audio budget of 3200 bytes"]
    assert got.code == 1008

    app = make_app(tmp_path, f, max_session_seconds=0.1)
    with TestClient(app) as client, client.websocket_connect("/listen") as ws:
        got = drain(ws)
    assert got.errors == ["the session reached its 0.1-second limit"]
    assert got.code == 1008
    assert f.all_closed


# -- /forms/{name} ---------------------------------------------------------------------


def test_form_by_typed_turns_is_stored_and_complete(tmp_path: Path) -> None:
    replies = [
        json.dumps({"is_answer": True, "value": 42}),
        json.dumps({"is_answer": True, "value": "ana@example.com"}),
        json.dumps({"is_answer": True, "value": "415 555 0100"}),
    ]
    f = fake_providers(replies)
    with TestClient(make_app(tmp_path, f)) as client:
        with client.websocket_connect("/forms/intake?mode=text") as ws:
            phone = "four one five five five five zero one zero zero"
            for text in ["I am 42", "ana at example dot com", "yes", phone, "yes"]:
                ws.send_text(json.dumps({"type": "text", "content": text}))
            got = drain(ws)
        session_id = got.events[0]["session_id"]  # issued by the server, the proof to resume
        again = refused(client, f"/forms/intake?mode=text&session={session_id}")

    assert got.of("assistant")[0]["content"] == (
        "Hello! I need three quick details from you. How old are you?"
    )
    progress = [(e["field"], e["value"], e["answered"]) for e in got.of("form_progress")]
    assert progress == [
        ("age", 42, 1),
        ("email", "ana@example.com", 2),
        ("phone", "+14155550100", 3),
    ]
    (complete,) = got.of("form_complete")
    assert complete["answers"] == {"age": 42, "email": "ana@example.com", "phone": "+14155550100"}
    assert (got.code, got.reason) == (1000, "form_complete")
    # The same session again: it is complete, read-only.
    assert again.of("finish")[0]["reason"] == "form_already_complete"

    async def stored() -> str | None:
        async with SQLiteFormStore(tmp_path / "forms.db") as store:
            record = await store.get(session_id)
        return record.status if record else None

    assert anyio.run(stored) == "complete"


def test_unknown_form_is_refused(tmp_path: Path) -> None:
    with TestClient(make_app(tmp_path, fake_providers())) as client:
        got = refused(client, "/forms/nope")
    assert (got.code, got.reason) == (1008, "no form named 'nope'")


# -- a real socket: uvicorn on 127.0.0.1 -------------------------------------------------


async def wait_until_idle(server: VoiceServer) -> None:
    with anyio.fail_after(5):
        while server.sessions:  # noqa: ASYNC110 - the server has no "idle" event
            await anyio.sleep(0.01)


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_real_socket_guards_and_conversation(tmp_path: Path) -> None:
    f = fake_providers(["Hi there."])
    app = make_app(
        tmp_path, f, access_token=TOKEN, allowed_origins=("https://app.example",), max_sessions=1
    )
    async with serve_on_loopback(app) as address:
        # Bad origin, bad token.
        async with loopback(
            address, f"/listen?token={TOKEN}", origin=Origin("https://evil.example")
        ) as ws:
            bad_origin = await adrain(ws)
        async with loopback(
            address, "/listen?token=nope", origin=Origin("https://app.example")
        ) as ws:
            bad_token = await adrain(ws)
        # The one session allowed; a second is refused while it runs.
        bearer = {"Authorization": f"Bearer {TOKEN}"}
        async with loopback(address, "/listen", additional_headers=bearer) as ws:
            assert json.loads(await ws.recv())["type"] == "session"
            async with loopback(address, "/listen", additional_headers=bearer) as other:
                busy = await adrain(other)
            for chunk in chunk_pcm(utterance(), FORMAT, 20):
                await ws.send(chunk)
            await ws.send(json.dumps({"type": "stop"}))
            got = await adrain(ws)
        await wait_until_idle(server_of(app))
        # Now there is room again.
        async with loopback(address, "/listen", additional_headers=bearer) as ws:
            assert json.loads(await ws.recv())["type"] == "session"
    assert (bad_origin.code, bad_origin.reason) == (
        1008,
        "origin https://evil.example is not allowed",
    )
    assert (bad_token.code, bad_token.reason) == (1008, "missing or wrong access token")
    assert (busy.code, busy.reason) == (1013, "server busy: all 1 sessions in use, retry later")
    assert got.of("assistant")[0]["content"] == "Hi there."
    assert (got.code, got.reason) == (1000, "end_of_input")
    assert f.all_closed


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_real_socket_oversize_frame_and_bad_json(tmp_path: Path) -> None:
    f = fake_providers()
    app = make_app(tmp_path, f, max_frame_bytes=2048)
    async with serve_on_loopback(app) as address, loopback(address, "/listen") as ws:
        await ws.send("not json")
        got = Received()
        got.add(await ws.recv())
        got.add(await ws.recv())
        await ws.send(bytes(4096))
        await adrain(ws, got)
    assert got.frames == ["session", "error"]
    assert got.errors[0].startswith("control message is not valid JSON")
    assert (got.code, got.reason) == (1009, "frame of 4096 bytes is over the 2048-byte limit")
    await wait_until_idle(server_of(app))
    assert f.all_closed


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.parametrize("how", ["close", "drop"])
async def test_client_leaving_mid_reply_closes_every_provider(tmp_path: Path, how: str) -> None:
    f = Fakes(
        FakeSTT(itertools.repeat("tell me a story")),
        FakeLLM(["Once upon a time. " * 20], token_delay=0.01),
        FakeTTS(chunk_delay=10),  # the TTS stream is still open when the client goes
    )
    app = make_app(tmp_path, f, realtime_lead=0.2)
    async with serve_on_loopback(app) as address:
        async with loopback(address, "/listen") as ws:
            for chunk in chunk_pcm(utterance(), FORMAT, 20):
                await ws.send(chunk)
            while not isinstance(await ws.recv(), bytes):
                pass  # until the reply's first audio
            assert server_of(app).sessions == 1
            assert f.llm.open_streams == 1 and f.tts.open_streams >= 1
            if how == "drop":
                ws.transport.abort()
        await wait_until_idle(server_of(app))
    assert f.all_closed
    assert f.llm.completed_streams == 0


# -- settings, logs, the documented command ------------------------------------------------


def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOICEPIPE_ALLOWED_ORIGINS", "https://a.example, https://B.example/")
    monkeypatch.setenv("VOICEPIPE_ACCESS_TOKEN", TOKEN)
    monkeypatch.setenv("VOICEPIPE_MAX_SESSIONS", "3")
    monkeypatch.setenv("VOICEPIPE_MAX_SESSION_SECONDS", "90")
    monkeypatch.setenv("VOICEPIPE_MAX_AUDIO_BYTES", "64000")
    settings = ServerSettings()
    assert settings.allowed_origins == ("https://a.example", "https://b.example")
    assert settings.access_token is not None
    assert settings.access_token.get_secret_value() == TOKEN
    assert (settings.max_sessions, settings.max_session_seconds, settings.max_audio_bytes) == (
        3,
        90.0,
        64000,
    )
    assert TOKEN not in repr(settings)
    monkeypatch.setenv("VOICEPIPE_ACCESS_TOKEN", "  ")
    assert ServerSettings().access_token is None  # blank means no token


def test_redact_token_filter() -> None:
    record = logging.LogRecord(
        "uvicorn.error",
        logging.INFO,
        __file__,
        1,
        '%s - "WebSocket %s" [accepted]',
        ("127.0.0.1:5000", f"/listen?sample_rate=48000&token={TOKEN}&mode=text"),
        None,
    )
    assert RedactToken().filter(record)
    assert record.getMessage() == (
        '127.0.0.1:5000 - "WebSocket /listen?sample_rate=48000&token=[redacted]&mode=text"'
        " [accepted]"
    )


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_token_stays_out_of_the_logs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    app = make_app(tmp_path, fake_providers(["Hi."]), access_token=TOKEN)
    async with serve_on_loopback(app) as address:
        async with httpx.AsyncClient(trust_env=False) as http:
            page = await http.get(f"http://{address}/?token={TOKEN}")
        async with loopback(address, f"/listen?token={TOKEN}") as ws:
            await ws.send(json.dumps({"type": "stop"}))
            await adrain(ws)
        async with loopback(address, "/listen?token=wrong-guess") as ws:
            await adrain(ws)
    assert page.status_code == 200
    server_log = "\n".join(
        r.getMessage() for r in caplog.records if r.name.startswith(("uvicorn", "voicepipe"))
    )
    assert TOKEN not in server_log and "wrong-guess" not in server_log
    assert "/?token=[redacted]" in server_log  # the access log line
    assert "/listen?token=[redacted]" in server_log


def test_providers_come_from_the_environment_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for role in ("STT", "LLM", "TTS"):
        monkeypatch.setenv(f"VOICEPIPE_{role}", "fake")
    monkeypatch.setenv("VOICEPIPE_REALTIME_LEAD", "0")
    app = create_app(ServerSettings(form_store=tmp_path / "f.db"))
    with TestClient(app, base_url="http://localhost") as client:  # a Host the defaults allow
        health = client.get("/health").json()
        got = talk(client, "ws://localhost/listen")
    assert health["providers"] == {"stt": "fake", "llm": "fake", "tts": "fake"}
    assert got.of("user_turn")[0]["content"] == "hello"  # the fake STT hears "hello"
    assert got.of("assistant")[0]["content"] == "hello"  # and the fake LLM echoes it


def test_the_documented_command_starts_the_server(tmp_path: Path) -> None:
    env = {**os.environ, "VOICEPIPE_STT": "fake", "VOICEPIPE_LLM": "fake", "VOICEPIPE_TTS": "fake"}
    env["VOICEPIPE_FORM_STORE"] = str(tmp_path / "forms.db")
    command = [sys.executable, "-m", "uvicorn", "examples.server.app:app", "--port", "0"]
    with subprocess.Popen(command, cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True) as proc:
        try:
            assert proc.stderr is not None
            lines: Iterator[str] = iter(proc.stderr.readline, "")
            running = next(line for line in lines if "Uvicorn running on" in line)
            match = re.search(r"http://127\.0\.0\.1:(\d+)", running)
            assert match is not None, running
            with httpx.Client(trust_env=False) as http:
                health = http.get(f"http://127.0.0.1:{match.group(1)}/health").json()
        finally:
            proc.terminate()
    assert health["status"] == "ok"
    assert health["providers"] == {"stt": "fake", "llm": "fake", "tts": "fake"}


# -- the drain (in process; tests/test_serve.py sends a real SIGTERM) ----------------------


def test_draining_refuses_sessions_with_1012_and_health_says_503(tmp_path: Path) -> None:
    app = make_app(tmp_path, fake_providers(["Hi."]))
    server = server_of(app)
    with TestClient(app) as client:
        before = client.get("/health")
        assert client.portal is not None
        client.portal.call(server.drain.begin)  # what SIGTERM does in the server's process
        after = client.get("/health")
        late = refused(client)
        form = refused(client, "/forms/intake?mode=text")
    assert (before.status_code, before.json()["status"]) == (200, "ok")
    assert (after.status_code, after.json()["status"]) == (503, "draining")
    for got in (late, form):
        assert got.frames == []
        assert (got.code, got.reason) == (1012, "server restarting: reconnect to continue")


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_drain_finishes_the_reply_in_progress_then_closes_1001(tmp_path: Path) -> None:
    story = "Once upon a time there was a reply. " * 4
    f = Fakes(FakeSTT(["tell me a story"]), FakeLLM([story], token_delay=0.01), FakeTTS())
    app = make_app(tmp_path, f, drain_seconds=0)
    server = server_of(app)
    async with serve_on_loopback(app) as address, loopback(address, "/listen") as ws:
        got = Received()
        for chunk in chunk_pcm(utterance(), FORMAT, 20):
            await ws.send(chunk)
        while "assistant_delta" not in got.frames:
            got.add(await ws.recv())
        server.drain.begin()  # the grace is 0: the input ends now
        for chunk in chunk_pcm(silence(500), FORMAT, 20):  # the microphone goes on: ignored
            await ws.send(chunk)
        await adrain(ws, got)
        await wait_until_idle(server)
    assert got.of("assistant")[0] == {
        "type": "assistant",
        "content": story.strip(),
        "interrupted": False,
    }
    assert got.frames[-2:] == ["metrics", "finish"]
    assert got.of("finish")[0]["reason"] == "shutdown"
    assert got.errors == []
    assert (got.code, got.reason) == (1001, "shutdown")
    assert f.all_closed


def test_form_lease_length_is_a_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOICEPIPE_FORM_LEASE_SECONDS", "7.5")
    settings = ServerSettings(form_store=tmp_path / "forms.db")
    f = fake_providers()
    app = create_app(settings, providers=Providers(f.stt, f.llm, f.tts))
    with TestClient(app) as client:
        client.get("/health")
        store = server_of(app).store
    assert settings.form_lease_seconds == 7.5
    assert isinstance(store, SQLiteFormStore) and store.lease_seconds == 7.5


def test_gc_freeze_at_startup_is_a_setting(tmp_path: Path) -> None:
    f = fake_providers()
    gc.unfreeze()
    try:
        with TestClient(make_app(tmp_path, f)) as client:
            client.get("/health")
            thawed = gc.get_freeze_count()
        with TestClient(make_app(tmp_path, f, gc_freeze=True)) as client:
            client.get("/health")
            frozen = gc.get_freeze_count()
    finally:
        gc.unfreeze()  # the rest of the test run collects as usual
    assert thawed == 0
    assert frozen > 1000  # the modules, the app, the providers


def test_gc_threshold_at_startup_is_a_setting(tmp_path: Path) -> None:
    f = fake_providers()
    before = gc.get_threshold()
    try:
        with TestClient(make_app(tmp_path, f)) as client:
            client.get("/health")
            untouched = gc.get_threshold()
        with TestClient(make_app(tmp_path, f, gc_threshold=12_345)) as client:
            client.get("/health")
            raised = gc.get_threshold()
    finally:
        gc.set_threshold(*before)  # the rest of the test run collects as usual
    assert untouched == before
    assert raised == (12_345, *before[1:])
