"""The server's security checks (issue 10 items 9-11), against a real uvicorn on
127.0.0.1: no spelling of the token in any log line, the token in the
``Sec-WebSocket-Protocol`` header, the Host allow-list (DNS rebinding), and form
session ids that are not credentials."""

from __future__ import annotations

import base64
import json
import logging
import socket
from pathlib import Path
from typing import Any
from urllib.parse import quote

import anyio
import httpx
import pytest
from fastapi import FastAPI
from starlette.requests import HTTPConnection
from websockets.asyncio.client import connect
from websockets.typing import Origin, Subprotocol

from tests.support import FORMAT, utterance
from tests.test_browser import CHROMIUM, FLAGS, WAIT_MS, speech_wav
from tests.test_server import FORMS, clean_env, fake_providers, make_app, server_of
from tests.test_transport_websocket import Received, adrain, never_reading_client, serve_on_loopback
from tests.uvicorn_support import loopback
from voicepipe.audio import chunk_pcm
from voicepipe.cli.serve import PICOWS
from voicepipe.forms import SQLiteFormStore
from voicepipe.server import Providers, ServerSettings, create_app
from voicepipe.server.security import (
    RedactToken,
    ResumeCheck,
    SessionSigner,
    host_allowed,
    presented_token,
)

__all__ = ["clean_env"]  # the autouse fixture: no VOICEPIPE_* of the developer's

on_uvicorn = pytest.mark.parametrize("anyio_backend", ["asyncio"])  # uvicorn runs on asyncio

SECRET = "s3cret/t0ken+Zq"  # characters a URL must encode
ENCODINGS = (SECRET, quote(SECRET, safe=""), quote(SECRET, safe="").replace("%2F", "%2f"))


def token_protocol(token: str) -> Subprotocol:
    encoded = base64.urlsafe_b64encode(token.encode()).decode().rstrip("=")
    return Subprotocol(f"voicepipe.token.{encoded}")


async def say_hello(ws: Any) -> Received:
    for chunk in chunk_pcm(utterance(), FORMAT, 20):
        await ws.send(chunk)
    await ws.send(json.dumps({"type": "stop"}))
    return await adrain(ws)


# -- item 9: the token --------------------------------------------------------------------


@pytest.mark.anyio
@on_uvicorn
@pytest.mark.parametrize("ws_layer", [PICOWS, "websockets-sansio"])
async def test_no_spelling_of_the_token_nor_a_guess_reaches_a_log_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, ws_layer: str
) -> None:
    caplog.set_level(logging.DEBUG)
    app = make_app(tmp_path, fake_providers(["Hi."]), access_token=SECRET)
    encoded = quote(SECRET, safe="")
    spelled = [
        f"token={encoded}",
        f"%74oken={encoded}",  # Starlette decodes the name: this one is accepted
        f"t%6Fken={encoded}&mode=text",
        f"%2574oken={encoded}",
        f"TOKEN={encoded}",
        f"x=1;token={encoded}",
    ]
    guesses = ["wrong-guess-1", "t%6Fken=wrong-guess-2", "%74oken=wrong-guess-3"]
    async with serve_on_loopback(app, ws_layer) as address:
        async with httpx.AsyncClient(trust_env=False) as http:
            for query in spelled:
                page = await http.get(f"http://{address}/?{query}")
                assert page.status_code == 200
        async with loopback(address, f"/listen?%74oken={encoded}") as ws:
            admitted = await say_hello(ws)
        for guess in guesses:
            query = guess if "=" in guess else f"token={guess}"
            async with loopback(address, f"/listen?{query}") as ws:
                refused = await adrain(ws)
            assert (refused.code, refused.reason) == (1008, "missing or wrong access token")
        async with loopback(address, "/listen", subprotocols=[token_protocol("guess-4")]) as ws:
            await adrain(ws)
        bearer = {"Authorization": "Bearer guess-5", "Cookie": "id=guess-6"}
        async with loopback(address, "/listen", additional_headers=bearer) as ws:
            await adrain(ws)
    assert admitted.of("assistant")[0]["content"] == "Hi."
    server = ("uvicorn", "voicepipe", "starlette", "fastapi")  # not the test's own clients
    lines = [r.getMessage() for r in caplog.records if r.name.startswith(server)]
    assert any('"WebSocket /listen?token=[redacted]" [accepted]' in line for line in lines)
    log = "\n".join(lines)
    if ws_layer != PICOWS:  # uvicorn's websockets layers log the headers at debug level
        assert any("authorization: [redacted]" in line.lower() for line in lines)
    for secret in (*ENCODINGS, "wrong-guess", "guess-4", "Z3Vlc3MtNA", "guess-5", "guess-6"):
        assert secret not in log
    assert "mode=text" in log  # what is not secret stays readable


def test_redaction_of_query_strings() -> None:
    redact = RedactToken([SECRET]).redact
    assert redact("GET /?sample_rate=48000&%74oken=abc&mode=text") == (
        "GET /?sample_rate=48000&token=[redacted]&mode=text"
    )
    assert redact("/forms/intake?session=abc.def") == "/forms/intake?session=[redacted]"
    assert redact("/x?%00%ff=1") == "/x?[redacted]"
    assert redact(f"said {ENCODINGS[2]} aloud") == "said [redacted] aloud"
    assert redact("said s3cret%2ft0ken%2bzq aloud") == "said s3cret%2ft0ken%2bzq aloud"  # not it
    assert redact("/listen?mode=text") == "/listen?mode=text"


@pytest.mark.anyio
@on_uvicorn
async def test_token_in_the_subprotocol_header(tmp_path: Path) -> None:
    f = fake_providers(["Hi."])
    app = make_app(tmp_path, f, access_token=SECRET)
    offer = [Subprotocol("voicepipe"), token_protocol(SECRET)]
    async with serve_on_loopback(app) as address:
        async with loopback(address, "/listen", subprotocols=offer) as ws:
            chosen = ws.subprotocol
            got = await say_hello(ws)
        wrong = [Subprotocol("voicepipe"), token_protocol("nope")]
        async with loopback(address, "/listen", subprotocols=wrong) as ws:
            refused_choice = ws.subprotocol  # accepted as a browser needs, to read the reason
            refused = await adrain(ws)
        broken = [Subprotocol("voicepipe"), Subprotocol("voicepipe.token.!!")]
        async with loopback(address, "/listen", subprotocols=broken) as ws:
            garbled = await adrain(ws)
    assert chosen == "voicepipe"  # never the token
    assert got.of("assistant")[0]["content"] == "Hi."
    assert refused_choice == "voicepipe"
    assert (refused.code, refused.reason) == (1008, "missing or wrong access token")
    assert (garbled.code, garbled.reason) == (1008, "missing or wrong access token")


def test_where_the_token_is_read_from() -> None:
    def connection(query: str = "", **headers: str) -> HTTPConnection:
        raw = [(k.replace("_", "-").encode(), v.encode()) for k, v in headers.items()]
        return HTTPConnection({"type": "websocket", "query_string": query.encode(), "headers": raw})

    protocol = f"voicepipe, {token_protocol('from-protocol')}"
    assert presented_token(connection("token=q")) == "q"
    assert presented_token(connection("token=q", sec_websocket_protocol=protocol)) == (
        "from-protocol"
    )
    both = connection("token=q", sec_websocket_protocol=protocol, authorization="Bearer b")
    assert presented_token(both) == "b"
    assert presented_token(connection()) is None


# -- item 10: DNS rebinding ------------------------------------------------------------------


def rebound(address: str, host: str, origin: str) -> connect:
    """Connect to the loopback server under another name (what DNS rebinding does)."""
    ip, port = address.split(":")
    sock = socket.create_connection((ip, int(port)))
    uri = f"ws://{host}:{port}/listen"
    return connect(uri, sock=sock, origin=Origin(origin), proxy=None, compression=None)


@pytest.mark.anyio
@on_uvicorn
async def test_dns_rebinding_host_must_be_allowed(tmp_path: Path) -> None:
    # No token set: before, a page on evil.example (resolving to us) passed the Origin
    # check because its Origin matched its own Host.
    f = fake_providers(["Hi."] * 4)
    app = make_app(
        tmp_path,
        f,
        allowed_hosts=(),  # the defaults: local names, plus the allowed origins' hosts
        allowed_origins=("https://voice.example.org",),
    )
    async with serve_on_loopback(app) as address:
        port = address.split(":")[1]
        with anyio.fail_after(10):  # before, this session was admitted and waited for audio
            async with rebound(address, "evil.example", f"http://evil.example:{port}") as ws:
                refused = await adrain(ws)
        async with httpx.AsyncClient(trust_env=False) as http:
            health = await http.get(
                f"http://{address}/health", headers={"host": f"evil.example:{port}"}
            )
            page = await http.get(f"http://{address}/", headers={"host": f"localhost:{port}"})
        results = []
        for host, origin in [
            ("localhost", f"http://localhost:{port}"),
            ("voice.example.org", "https://voice.example.org"),
        ]:
            async with rebound(address, host, origin) as ws:
                results.append(await say_hello(ws))
    assert (refused.code, refused.reason) == (
        1008,
        "host 'evil.example:" + port + "' is not allowed; add it to VOICEPIPE_ALLOWED_HOSTS",
    )
    assert refused.frames == []
    assert health.status_code == 400
    assert "VOICEPIPE_ALLOWED_HOSTS" in health.text
    assert page.status_code == 200
    assert [r.of("assistant")[0]["content"] for r in results] == ["Hi.", "Hi."]


def test_host_allow_list() -> None:
    def allowed(host: str | None, **settings: Any) -> bool:
        return host_allowed(ServerSettings(**settings), host)

    assert allowed("localhost:8000") and allowed("127.0.0.1") and allowed("[::1]:8000")
    assert allowed("LOCALHOST")
    assert not allowed("evil.example") and not allowed(None) and not allowed("[::1")
    assert not allowed("localhost.evil.example:8000")
    assert allowed("app.example", allowed_origins="https://app.example:8443")
    only = {"allowed_hosts": "voice.example.org"}
    assert allowed("voice.example.org:443", **only) and not allowed("localhost", **only)
    assert allowed("anything", allowed_hosts="*")


# -- item 11: a form session id is not a credential --------------------------------------


def forms_app(tmp_path: Path, replies: list[str], check: ResumeCheck | None = None) -> FastAPI:
    f = fake_providers(replies)
    settings = ServerSettings(
        form_store=tmp_path / "forms.db", forms_dir=FORMS, realtime_lead=0, session_secret="k"
    )
    providers = Providers(f.stt, f.llm, f.tts, ("fake", "fake", "fake"))
    return create_app(settings, providers=providers, may_resume=check)


async def typed(address: str, path: str, *turns: str) -> Received:
    async with loopback(address, path) as ws:
        for turn in turns:
            await ws.send(json.dumps({"type": "text", "content": turn}))
        if turns:
            # Wait until the last turn is answered, then leave: the session stays resumable.
            got = Received()
            while got.of("form_progress") == [] or got.frames[-1] != "metrics":
                got.add(await ws.recv())
            return got
        return await adrain(ws)


@pytest.mark.anyio
@on_uvicorn
async def test_a_known_form_session_id_starts_nothing_and_discloses_nothing(
    tmp_path: Path,
) -> None:
    age = json.dumps({"is_answer": True, "value": 42})
    app = forms_app(tmp_path, [age])
    async with serve_on_loopback(app) as address:
        first = await typed(address, "/forms/intake?mode=text", "I am 42")
        session_id = first.events[0]["session_id"]
        nonce = session_id.rpartition(".")[0]
        attempts = {}
        for name, guess in {
            "the nonce alone": nonce,
            "a forged signature": nonce + ".AAAAAAAAAAAAAAAAAAAAAAAA",
            "a guessed id": "caller-42",
            "an id nobody has": "nobody",
        }.items():
            async with loopback(address, f"/forms/intake?mode=text&session={guess}") as ws:
                attempts[name] = await adrain(ws)
        while server_of(app).sessions:  # noqa: ASYNC110 - no idle event
            await anyio.sleep(0.01)
        async with SQLiteFormStore(tmp_path / "forms.db") as store:
            stored = [await store.get(x) for x in (session_id, nonce, "caller-42", "nobody")]
        # The owner, with the id the server gave it, resumes where it left off.
        async with loopback(address, f"/forms/intake?mode=text&session={session_id}") as ws:
            resumed = Received()
            while "assistant" not in resumed.frames:
                resumed.add(await ws.recv())
    for name, got in attempts.items():
        assert got.frames == [], name  # no session event, no answers read back
        assert (got.code, got.reason) == (
            1008,
            "unknown form session, or not yours to resume",
        ), name
    assert stored[0] is not None and stored[0].answers["age"].value == 42
    assert stored[1:] == [None, None, None]  # nothing was started
    assert resumed.events[0]["session_id"] == session_id
    assert "e-mail address" in resumed.of("assistant")[0]["content"]  # the next question


@pytest.mark.anyio
@on_uvicorn
async def test_an_app_plugs_in_its_own_check(tmp_path: Path) -> None:
    def logged_in(connection: HTTPConnection, form: str, session_id: str) -> bool:
        return form == "intake" and connection.headers.get("x-user") == session_id

    app = forms_app(tmp_path, [json.dumps({"is_answer": True, "value": 30})], logged_in)
    async with serve_on_loopback(app) as address:
        ana = {"X-User": "ana"}
        path = "/forms/intake?mode=text&session=ana"
        async with loopback(address, path, additional_headers=ana) as ws:
            own = Received()
            own.add(await ws.recv())
        async with loopback(address, "/forms/intake?mode=text&session=ana") as ws:
            stranger = await adrain(ws)
    assert own.events[0]["session_id"] == "ana"
    assert stranger.frames == [] and stranger.code == 1008


def test_signed_session_ids() -> None:
    signer = SessionSigner(b"secret")
    issued = signer.new("intake")
    assert signer.valid("intake", issued)
    assert not signer.valid("other-form", issued)  # not movable to another form
    assert not SessionSigner(b"another secret").valid("intake", issued)
    assert not signer.valid("intake", issued + "x")
    assert not signer.valid("intake", "no-dot") and not signer.valid("intake", ".sig")
    assert len({signer.new("intake") for _ in range(100)}) == 100


@pytest.mark.browser
@pytest.mark.anyio
@on_uvicorn
@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Chromium: apt-get install chromium")
async def test_the_page_sends_its_token_in_the_subprotocol_in_chromium(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    playwright = pytest.importorskip("playwright.async_api")
    caplog.set_level(logging.DEBUG)
    f = fake_providers(["Hi."])
    wav = speech_wav(tmp_path / "speech.wav", pause_ms=2000)
    app = make_app(tmp_path, f, access_token=SECRET, allowed_hosts=())
    async with serve_on_loopback(app) as address, playwright.async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            args=[*FLAGS, f"--use-file-for-fake-audio-capture={wav}"],
        )
        try:
            page = await browser.new_page()
            await page.goto(f"http://{address}/#token={quote(SECRET, safe='')}")
            await page.click("#start")
            await page.wait_for_function(
                "() => window.voicepipe.events.includes('session')", timeout=WAIT_MS
            )
            protocol = await page.evaluate("() => window.voicepipe.ws.protocol")
            await page.click("#stop")
            await page.wait_for_function(
                "() => window.voicepipe.events.includes('finish')", timeout=WAIT_MS
            )
        finally:
            await browser.close()
    assert protocol == "voicepipe"
    server = ("uvicorn", "voicepipe", "starlette", "fastapi")
    log = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith(server))
    assert "[accepted]" in log
    for secret in ENCODINGS:
        assert secret not in log


# -- capacity (issue 10 item 5, on the server itself) ---------------------------------------


@pytest.mark.anyio
@on_uvicorn
async def test_clients_that_stop_reading_do_not_fill_the_server(tmp_path: Path) -> None:
    # VOICEPIPE_REALTIME_LEAD=0 VOICEPIPE_MAX_SESSION_SECONDS=1 VOICEPIPE_MAX_SESSIONS=2,
    # two clients with tiny receive buffers that ask for a long reply and never read.
    story = "Once upon a time there was a very long story. " * 400
    f = fake_providers([story, story, "Hi."])
    app = make_app(tmp_path, f, max_sessions=2, max_session_seconds=1.0)
    server = server_of(app)
    async with serve_on_loopback(app) as address:
        turn = json.dumps({"type": "text", "content": "a story"})
        stuck = [
            await anyio.to_thread.run_sync(never_reading_client, address, "/listen?mode=text", turn)
            for _ in range(2)
        ]
        try:
            with anyio.fail_after(20):  # a hang guard; the limit is 1 s
                while server.sessions < 2:  # noqa: ASYNC110 - the server has no event for it
                    await anyio.sleep(0.01)
                while server.sessions:  # noqa: ASYNC110
                    await anyio.sleep(0.05)
            async with loopback(address, "/listen") as ws:  # served, not "server busy"
                got = await say_hello(ws)
        finally:
            for sock in stuck:
                sock.close()
    assert got.of("assistant")[0]["content"] == "Hi."
    assert (got.code, got.reason) == (1000, "end_of_input")
    assert len(f.tts.texts) < 2 * 400 + 1  # the stories were cut short


@pytest.mark.anyio
@on_uvicorn
async def test_send_timeout_is_a_setting_that_frees_the_slot_of_a_client_that_stops_reading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="voicepipe.transports.websocket")
    # No session time limit to fall back on: only VOICEPIPE_SEND_TIMEOUT can end it.
    monkeypatch.setenv("VOICEPIPE_SEND_TIMEOUT", "0.5")
    story = "Once upon a time there was a very long story. " * 400
    f = fake_providers([story])
    app = make_app(tmp_path, f, max_sessions=1, max_session_seconds=3600)
    server = server_of(app)
    assert server.settings.send_timeout == 0.5
    async with serve_on_loopback(app) as address:
        turn = json.dumps({"type": "text", "content": "a story"})
        stuck = await anyio.to_thread.run_sync(
            never_reading_client, address, "/listen?mode=text", turn
        )
        try:
            with anyio.fail_after(20):  # a hang guard; the timeout is 0.5 s
                while server.sessions < 1:  # noqa: ASYNC110 - the server has no event for it
                    await anyio.sleep(0.01)
                while server.sessions:  # noqa: ASYNC110
                    await anyio.sleep(0.05)
        finally:
            stuck.close()
    assert "the client read nothing for 0.5 s; dropped" in caplog.text
    assert len(f.tts.texts) < 400  # the story was cut short
