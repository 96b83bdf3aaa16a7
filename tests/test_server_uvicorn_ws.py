"""voicepipe's picows WebSocket layer under uvicorn (``voicepipe.server.uvicorn_ws``), on
127.0.0.1: the ASGI contract (accept, refusal, subprotocols, headers), frames both ways,
fragments, close codes (the peer's, ours, 1007, 1009, 1012 at shutdown), pings, and
reading paused while the app does not receive."""

from __future__ import annotations

import base64
import os
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
import uvicorn
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.uvicorn_support import in_process, loopback
from voicepipe.cli.serve import PICOWS
from voicepipe.transports.websocket import TAP

pytestmark = [pytest.mark.anyio, pytest.mark.parametrize("anyio_backend", ["asyncio"])]

App = Any


@asynccontextmanager
async def serving(app: App, **config: Any) -> AsyncIterator[tuple[str, uvicorn.Server]]:
    """``app`` under uvicorn with the picows layer on a free port; yields ``host:port``."""
    async with in_process(app, **({"lifespan": "off", "ws": PICOWS} | config)) as (server, port):
        yield f"127.0.0.1:{port}", server


def client(address: str, path: str = "/", **kwargs: Any) -> connect:
    return loopback(address, path, **kwargs)


def echo_app(log: list[Any]) -> App:
    """Accepts (with the first subprotocol offered), echoes every message, records all."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        log.append(("scope", scope["path"], scope["query_string"], scope["subprotocols"]))
        assert (await receive())["type"] == "websocket.connect"
        offered = scope["subprotocols"]
        await send(
            {
                "type": "websocket.accept",
                "subprotocol": offered[0] if offered else None,
                "headers": [(b"x-session", b"42")],
            }
        )
        while True:
            message = await receive()
            log.append(message)
            if message["type"] == "websocket.disconnect":
                return
            if message.get("text") == "close please":
                await send({"type": "websocket.close", "code": 4001, "reason": "as asked"})
                log.append(await receive())
                return
            reply = {k: v for k, v in message.items() if k in ("bytes", "text") and v is not None}
            await send({"type": "websocket.send", **reply})

    return app


async def test_messages_both_ways_with_subprotocol_and_headers() -> None:
    log: list[Any] = []
    async with (
        serving(echo_app(log)) as (address, _),
        client(address, "/talk%20now?x=1", subprotocols=["voicepipe"]) as ws,
    ):
        assert ws.subprotocol == "voicepipe"
        assert ws.response is not None and ws.response.headers["x-session"] == "42"
        await ws.send(b"\x00\x01" * 320)
        assert await ws.recv() == b"\x00\x01" * 320
        await ws.send("héllo")
        assert await ws.recv() == "héllo"
        big = os.urandom(200_000)  # over 64 KiB: a 64-bit length, in many TCP segments
        await ws.send(big)
        assert await ws.recv() == big
        await ws.send(["part one, ", "part two"])  # a fragmented text message
        assert await ws.recv() == "part one, part two"
        await ws.send("close please")
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
    assert closed.value.rcvd is not None
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (4001, "as asked")
    assert log[0] == ("scope", "/talk now", b"x=1", ["voicepipe"])
    assert log[1] == {"type": "websocket.receive", "bytes": b"\x00\x01" * 320}
    assert log[2] == {"type": "websocket.receive", "text": "héllo"}
    assert log[-1] == {"type": "websocket.disconnect", "code": 4001, "reason": "as asked"}


@pytest.mark.parametrize("http", ["h11", "httptools"])
async def test_the_scope_has_the_addresses_of_the_connection(http: str) -> None:
    # Taken from uvicorn's HTTP protocol, which read the request (either parser).
    scopes: list[dict[str, Any]] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        scopes.append(scope)
        await receive()
        await send({"type": "websocket.accept"})
        await receive()

    async with serving(app, http=http) as (address, _), client(address, "/x") as ws:
        local = ws.local_address
    (scope,) = scopes
    port = int(address.split(":")[1])
    assert scope["server"] == ("127.0.0.1", port)
    assert scope["client"] == ("127.0.0.1", local[1])
    assert scope["scheme"] == "ws"


async def test_the_client_closing_reaches_the_app_with_its_code() -> None:
    log: list[Any] = []
    async with serving(echo_app(log)) as (address, _):
        async with client(address) as ws:
            await ws.send(b"x")
            assert await ws.recv() == b"x"
            await ws.close(4002, "bye")
        with anyio.fail_after(5):
            while log[-1]["type"] != "websocket.disconnect":  # noqa: ASYNC110
                await anyio.sleep(0.01)
    assert log[-1] == {"type": "websocket.disconnect", "code": 4002, "reason": "bye"}
    assert ws.close_code == 4002  # our close frame echoed the client's


@pytest.mark.parametrize("how", ["close", "http"])
async def test_a_refusal_before_accept_is_an_http_response(how: str) -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        if how == "close":
            await send({"type": "websocket.close", "code": 1008})
            return
        await send(
            {
                "type": "websocket.http.response.start",
                "status": 401,
                "headers": [(b"content-type", b"text/plain")],
            }
        )
        await send({"type": "websocket.http.response.body", "body": b"no ", "more_body": True})
        await send({"type": "websocket.http.response.body", "body": b"token"})

    async with serving(app) as (address, _):
        with pytest.raises(InvalidStatus) as refused:
            async with client(address):
                pass
    response = refused.value.response
    if how == "close":
        assert response.status_code == 403
    else:
        assert (response.status_code, response.body) == (401, b"no token")


async def test_an_app_that_fails_before_accept_answers_500() -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        raise RuntimeError("the app fell over")

    async with serving(app) as (address, _):
        with pytest.raises(InvalidStatus) as refused:
            async with client(address):
                pass
    assert refused.value.response.status_code == 500


@pytest.mark.parametrize("frame", ["too big", "bad utf-8", "too big in fragments"])
async def test_bad_frames_close_with_1009_or_1007(frame: str) -> None:
    log: list[Any] = []
    async with serving(echo_app(log), ws_max_size=1000) as (address, _):
        sock = await anyio.to_thread.run_sync(raw_client, address)
        try:
            if frame == "too big":
                send_frame(sock, 0x82, bytes(1001))
            elif frame == "bad utf-8":
                send_frame(sock, 0x81, b"\xff\xfe")
            else:
                send_frame(sock, 0x02, bytes(600))  # binary, not the last fragment
                send_frame(sock, 0x80, bytes(600))  # the last: 1200 bytes in all
            data = b""
            with anyio.fail_after(5):
                while len(data) < 4:
                    data += await anyio.to_thread.run_sync(sock.recv, 1024)
        finally:
            sock.close()
        with anyio.fail_after(5):
            while not isinstance(log[-1], dict) or log[-1]["type"] != "websocket.disconnect":  # noqa: ASYNC110
                await anyio.sleep(0.01)
    assert data[0] == 0x88  # a close frame,
    assert int.from_bytes(data[2:4], "big") == (1007 if frame == "bad utf-8" else 1009)
    assert log[-1]["code"] == (1007 if frame == "bad utf-8" else 1009)
    assert not any(isinstance(m, dict) and m["type"] == "websocket.receive" for m in log)


async def test_pings_are_answered() -> None:
    async with serving(echo_app([])) as (address, _), client(address) as ws:
        pong = await ws.ping(b"are you there")
        with anyio.fail_after(5):
            await pong


async def test_a_silent_client_is_pinged_and_dropped() -> None:
    log: list[Any] = []
    async with serving(echo_app(log), ws_ping_interval=0.2, ws_ping_timeout=0.2) as (address, _):
        sock = await anyio.to_thread.run_sync(raw_client, address)
        try:
            with anyio.fail_after(5):
                data = b""
                while b"\x89" not in data:  # a ping (fin, opcode 9), unanswered
                    data += await anyio.to_thread.run_sync(sock.recv, 1024)
                while not isinstance(log[-1], dict) or log[-1]["type"] != "websocket.disconnect":  # noqa: ASYNC110
                    await anyio.sleep(0.02)
        finally:
            sock.close()


async def test_reading_pauses_while_the_app_does_not_receive() -> None:
    # The app reads one message, then waits: the client's frames stop at a full TCP window,
    # not in the server's memory.
    received = 0
    go = anyio.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        nonlocal received
        await receive()
        await send({"type": "websocket.accept"})
        await receive()
        received = 1
        await go.wait()
        while (await receive())["type"] != "websocket.disconnect":
            received += 1

    async with serving(app) as (address, _), client(address, write_limit=1) as ws:
        frame = bytes(64 * 1024)
        sent = 0
        with anyio.move_on_after(1.5):
            while True:
                await ws.send(frame)
                sent += 1
        assert received == 1
        assert sent < 200  # blocked: 12.5 MiB would have gone into a server that never read
        go.set()
        with anyio.fail_after(10):
            while received < sent:  # noqa: ASYNC110 - everything queued arrives, in order
                await anyio.sleep(0.01)


async def test_a_client_that_stops_reading_blocks_the_sender() -> None:
    blocked = anyio.Event()
    sent = 0

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        nonlocal sent
        await receive()
        await send({"type": "websocket.accept"})
        with anyio.move_on_after(3):
            while True:
                await send({"type": "websocket.send", "bytes": bytes(64 * 1024)})
                sent += 1
        blocked.set()

    async with serving(app) as (address, _):
        sock = await anyio.to_thread.run_sync(raw_client, address)
        try:
            with anyio.fail_after(10):
                await blocked.wait()
        finally:
            sock.close()
    assert sent < 200  # the writes waited for a reader that never came


async def test_shutdown_closes_sessions_with_1012() -> None:
    log: list[Any] = []
    async with serving(echo_app(log)) as (address, server), client(address) as ws:
        await ws.send(b"x")
        assert await ws.recv() == b"x"
        server.should_exit = True
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1012
    assert log[-1]["type"] == "websocket.disconnect"


async def test_the_tap_takes_messages_only_while_the_app_waits_for_one() -> None:
    # voicepipe's TAP extension: a message the tap takes never reaches receive(); one it
    # declines does; and while the app is busy, messages queue (in order) untouched.
    offered: list[Any] = []
    received: list[Any] = []
    proceed = anyio.Event()

    def tap(message: bytes | str) -> bool:
        offered.append(message)
        return message != b"decline"

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        scope["extensions"][TAP]["set"](tap)
        received.append((await receive())["bytes"])  # b"decline": the tap said no
        await proceed.wait()  # busy: b"queued" arrives meanwhile
        received.append((await receive())["bytes"])
        scope["extensions"][TAP]["set"](None)
        received.append((await receive())["bytes"])  # no tap any more
        await receive()

    async with serving(app) as (address, _), client(address) as ws:
        await ws.send(b"taken")
        await ws.send(b"decline")
        with anyio.fail_after(5):
            while received != [b"decline"]:  # noqa: ASYNC110
                await anyio.sleep(0.01)
        await ws.send(b"queued")
        await (await ws.ping())  # the server has read b"queued" before its pong
        proceed.set()
        await ws.send(b"untapped")
        with anyio.fail_after(5):
            while len(received) < 3:  # noqa: ASYNC110
                await anyio.sleep(0.01)
    assert offered == [b"taken", b"decline"]
    assert received == [b"decline", b"queued", b"untapped"]


async def test_the_tap_writes_at_once_only_when_send_would_not_wait() -> None:
    # TAP's `send`: after accept it writes text and binary messages at once, in order;
    # not before accept, not while the socket is full, and never after the close.
    results: list[Any] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        send_nowait = scope["extensions"][TAP]["send"]
        await receive()
        results.append(send_nowait(b"early"))  # before accept: refused
        await send({"type": "websocket.accept"})
        results.append(send_nowait("text"))
        await send({"type": "websocket.send", "bytes": b"asgi"})
        results.append(send_nowait(b"binary"))
        await send({"type": "websocket.close", "code": 4002, "reason": "done"})
        results.append(send_nowait(b"late"))  # after the close: refused
        await receive()

    async with serving(app) as (address, _), client(address) as ws:
        got = [await ws.recv(), await ws.recv(), await ws.recv()]
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
    assert results == [False, True, True, False]
    assert got == ["text", b"asgi", b"binary"]
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4002


async def test_the_tap_refuses_to_write_while_the_client_does_not_read() -> None:
    written = 0
    done = anyio.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        nonlocal written
        send_nowait = scope["extensions"][TAP]["send"]
        await receive()
        await send({"type": "websocket.accept"})
        while written < 1000 and send_nowait(bytes(64 * 1024)):
            written += 1
        done.set()
        await receive()

    async with serving(app) as (address, _):
        sock = await anyio.to_thread.run_sync(raw_client, address)
        try:
            with anyio.fail_after(10):
                await done.wait()
        finally:
            sock.close()
    assert 0 < written < 200  # refused at the write buffer's high-water mark


def raw_client(address: str) -> socket.socket:
    """A client that completes the handshake, then neither reads nor answers anything."""
    host, port = address.split(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(10)
    sock.connect((host, int(port)))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        f"GET / HTTP/1.1\r\nHost: {address}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    response = b""
    while b"\r\n\r\n" not in response:
        response += sock.recv(1)
    assert response.startswith(b"HTTP/1.1 101"), response
    return sock


def send_frame(sock: socket.socket, head: int, payload: bytes) -> None:
    """Send one masked frame: ``head`` is its first byte (FIN and opcode)."""
    size = len(payload)
    length = bytes([0x80 | size]) if size < 126 else bytes([0x80 | 126]) + size.to_bytes(2, "big")
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    sock.sendall(bytes([head]) + length + mask + masked)
