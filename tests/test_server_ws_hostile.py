"""voicepipe's picows WebSocket layer (``voicepipe.server.uvicorn_ws``) against hostile and
broken clients, on 127.0.0.1 with raw sockets: torn frames and handshakes, clients that never
read, bad framing (RFC 6455's 1002, 1007, 1009), ping floods, both sides' closing
handshakes, app failures and refusals, the scope, and nothing left behind. Where uvicorn's
own ``websockets-sansio`` layer behaves the same, it runs as the reference."""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from importlib.util import find_spec
from typing import Any

import anyio
import pytest
import uvicorn
from anyio.abc import SocketStream

from tests.uvicorn_support import in_process
from voicepipe.cli.serve import PICOWS
from voicepipe.server import uvicorn_ws

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # uvicorn's loop


ALSO_ON_UVLOOP = pytest.mark.parametrize(
    "anyio_backend",
    [
        "asyncio",
        pytest.param(
            ("asyncio", {"use_uvloop": True}),
            id="uvloop",
            marks=pytest.mark.skipif(find_spec("uvloop") is None, reason="no uvloop"),
        ),
    ],
)
"""For flow control and aborts: ``voicepipe serve`` runs on uvloop where it is installed."""

Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[dict[str, Any], Receive, Send], Awaitable[None]]

LAYERS = ["picows", "websockets-sansio"]
"""voicepipe's layer, and uvicorn's default as the reference."""


def layer_class(name: str) -> str:
    return PICOWS if name == "picows" else name


@pytest.fixture(params=LAYERS)
def layer(request: pytest.FixtureRequest) -> str:
    return str(request.param)


# -- the server ------------------------------------------------------------------------


class Served:
    """A running uvicorn server: its address, and what it holds."""

    def __init__(self, server: uvicorn.Server, port: int) -> None:
        self.server = server
        self.port = port
        self.address = f"127.0.0.1:{port}"

    @property
    def connections(self) -> int:
        return len(self.server.server_state.connections)

    @property
    def tasks(self) -> int:
        return len(self.server.server_state.tasks)

    async def settled(self) -> None:
        """Wait until the server holds no connection and no app task."""
        with anyio.fail_after(10):
            while self.connections or self.tasks:  # noqa: ASYNC110 - uvicorn has no event
                await anyio.sleep(0.01)


@asynccontextmanager
async def serving(app: App, layer: str = "picows", **config: Any) -> AsyncIterator[Served]:
    """``app`` under uvicorn with the WebSocket layer ``layer`` on a free port of 127.0.0.1."""
    options = {"lifespan": "off", "ws": layer_class(layer)} | config
    async with in_process(app, **options) as (server, port):
        yield Served(server, port)


class Recorder:
    """An app that accepts, records every message (and its scope), and echoes data; it
    closes when asked by a text message ``close CODE REASON``."""

    def __init__(self, *, accept: bool = True) -> None:
        self.accept = accept
        self.scopes: list[dict[str, Any]] = []
        self.messages: list[Message] = []
        self.errors: list[BaseException] = []
        self.ended = anyio.Event()

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        self.scopes.append(scope)
        try:
            assert (await receive())["type"] == "websocket.connect"
            await send({"type": "websocket.accept"})
            while True:
                message = await receive()
                self.messages.append(message)
                if message["type"] == "websocket.disconnect":
                    return
                text = message.get("text")
                if text is not None and text.startswith("close "):
                    _, code, reason = text.split(" ", 2)
                    await send({"type": "websocket.close", "code": int(code), "reason": reason})
                    continue
                data = {k: v for k, v in message.items() if k in ("bytes", "text")}
                await send({"type": "websocket.send", **data})
        except BaseException as exc:
            self.errors.append(exc)
            raise
        finally:
            self.ended.set()

    @property
    def received(self) -> list[bytes | str]:
        return [
            m["bytes"] if m.get("bytes") is not None else m["text"]
            for m in self.messages
            if m["type"] == "websocket.receive"
        ]

    @property
    def disconnect(self) -> Message:
        last = self.messages[-1]
        assert last["type"] == "websocket.disconnect", self.messages
        return last

    async def wait(self) -> None:
        with anyio.fail_after(10):
            await self.ended.wait()


# -- a raw client --------------------------------------------------------------------------


def frame(
    opcode: int, payload: bytes = b"", *, fin: bool = True, rsv: int = 0, mask: bool = True
) -> bytes:
    """One client frame: ``rsv`` is the three RSV bits (0-7)."""
    head = bytes([(0x80 if fin else 0) | (rsv & 7) << 4 | opcode])
    size = len(payload)
    flag = 0x80 if mask else 0
    if size < 126:
        length = bytes([flag | size])
    elif size < 65536:
        length = bytes([flag | 126]) + size.to_bytes(2, "big")
    else:
        length = bytes([flag | 127]) + size.to_bytes(8, "big")
    if not mask:
        return head + length + payload
    key = os.urandom(4)
    masked = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return head + length + key + masked


def close_payload(code: int, reason: str = "") -> bytes:
    return code.to_bytes(2, "big") + reason.encode()


def close_payload_frame(code: int) -> bytes:
    """A server's close frame (unmasked) with ``code`` and no reason."""
    return bytes([0x88, 2]) + code.to_bytes(2, "big")


class Closed(Exception):
    """The server closed the TCP connection."""


class Raw:
    """A WebSocket client on a plain socket: sends any bytes, parses the server's frames."""

    def __init__(self, stream: SocketStream) -> None:
        self.stream = stream
        self.buffer = b""

    async def handshake(self, path: str = "/", headers: str = "") -> tuple[int, bytes]:
        key = base64.b64encode(os.urandom(16)).decode()
        await self.send(
            f"GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            f"Sec-WebSocket-Version: 13\r\n{headers}\r\n".encode()
        )
        while b"\r\n\r\n" not in self.buffer:
            await self._fill()
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        return int(head.split(b" ", 2)[1]), head

    async def send(self, data: bytes) -> None:
        await self.stream.send(data)

    async def _fill(self) -> None:
        with anyio.fail_after(10):
            try:
                data = await self.stream.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError, ConnectionError) as exc:
                raise Closed from exc
        self.buffer += data

    async def read(self, size: int) -> bytes:
        while len(self.buffer) < size:
            await self._fill()
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    async def frame(self) -> tuple[int, bytes]:
        """The server's next frame: (first byte, payload)."""
        first, second = await self.read(2)
        assert not second & 0x80, "a server frame must not be masked"
        size = second & 0x7F
        if size == 126:
            size = int.from_bytes(await self.read(2), "big")
        elif size == 127:
            size = int.from_bytes(await self.read(8), "big")
        return first, await self.read(size)

    async def close_frame(self) -> tuple[int | None, str]:
        """Skip data and pongs until the server's close frame: its code and reason."""
        while True:
            first, payload = await self.frame()
            if first & 0x0F == 0x8:
                if not payload:
                    return None, ""
                return int.from_bytes(payload[:2], "big"), payload[2:].decode()

    async def eof(self) -> bytes:
        """Read until the server closes the connection; what came before."""
        with anyio.fail_after(10):
            while True:
                try:
                    await self._fill()
                except Closed:
                    data, self.buffer = self.buffer, b""
                    return data

    async def aclose(self) -> None:
        await self.stream.aclose()


@asynccontextmanager
async def raw_client(
    address: str,
    path: str = "/",
    headers: str = "",
    *,
    handshake: bool = True,
    rcvbuf: int | None = None,
) -> AsyncIterator[Raw]:
    """A raw client, past a successful handshake unless ``handshake`` is False."""
    host, port = address.split(":")
    sock = socket.socket()
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)  # before connect
    try:
        sock.connect((host, int(port)))  # loopback: the kernel completes it at once
        stream = await SocketStream.from_socket(sock)
    except BaseException:
        sock.close()
        raise
    raw = Raw(stream)
    try:
        if handshake:
            status, head = await raw.handshake(path, headers)
            assert status == 101, head
        yield raw
    finally:
        await raw.aclose()


# -- the handshake -----------------------------------------------------------------------


async def test_a_handshake_with_large_headers_is_accepted(layer: str) -> None:
    # A browser sends the page's cookies with the upgrade (4 KiB each is common), and
    # voicepipe's token may come in Sec-WebSocket-Protocol: 12 kB here, where picows
    # reads 3.75 KiB at first.
    app = Recorder()
    cookie = "session=" + "c" * 6000
    token = "voicepipe.token." + "t" * 6000

    async def choose(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        await app(scope, receive, _choosing(send, "voicepipe"))

    async with serving(choose, layer) as served:
        headers = f"Cookie: {cookie}\r\nSec-WebSocket-Protocol: voicepipe, {token}\r\n"
        async with raw_client(served.address, "/", headers) as raw:
            await raw.send(frame(0x1, b"hello"))
            assert await raw.frame() == (0x81, b"hello")
        await app.wait()
    assert dict(app.scopes[0]["headers"])[b"cookie"] == cookie.encode()
    assert app.scopes[0]["subprotocols"] == ["voicepipe", token]


def _choosing(send: Send, subprotocol: str) -> Send:
    """``send``, with ``subprotocol`` chosen in the app's accept."""

    async def choosing(message: Message) -> None:
        if message["type"] == "websocket.accept":
            message = message | {"subprotocol": subprotocol}
        await send(message)

    return choosing


async def test_an_upgrade_without_a_key_is_refused_and_the_app_told(layer: str) -> None:
    # uvicorn hands over any request with "Upgrade: websocket"; a bad one gets 400 (from
    # picows once the app accepts; uvicorn's own layer answers before the app runs), and
    # the app, if it ran, learns the client is gone rather than failing on its next send.
    raised: list[BaseException] = []

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        await receive()
        try:
            await send({"type": "websocket.accept"})
            await send({"type": "websocket.send", "text": "hello"})
        except BaseException as exc:
            raised.append(exc)

    async with serving(app, layer) as served:
        async with raw_client(served.address, handshake=False) as raw:
            await raw.send(
                b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Version: 13\r\n\r\n"
            )
            response = await raw.eof()
        await served.settled()
    assert response.startswith(b"HTTP/1.1 400 ")
    assert [type(exc).__name__ for exc in raised] in ([], ["ClientDisconnected"])


@pytest.mark.parametrize(("version", "status"), [("8", 426), ("14", 426), ("", 400)])
@pytest.mark.parametrize("reference", ["picows", "wsproto"])
async def test_a_websocket_version_other_than_13_is_refused_naming_13(
    version: str, status: int, reference: str
) -> None:
    # RFC 6455 4.2.2: 426 (400 without the header) and the version the server speaks; the
    # app never runs. (uvicorn's wsproto layer is the reference here: its websockets layers
    # answer 400 without the header, whatever the version.)
    app = Recorder()
    async with serving(app, reference) as served:
        async with raw_client(served.address, handshake=False) as raw:
            key = base64.b64encode(os.urandom(16))
            line = b"Sec-WebSocket-Version: " + version.encode() + b"\r\n" if version else b""
            await raw.send(
                b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Key: " + key + b"\r\n" + line + b"\r\n"
            )
            response = await raw.eof()
        await served.settled()
    head = response.partition(b"\r\n\r\n")[0].lower()
    assert head.startswith(b"http/1.1 %d " % status)
    assert b"\r\nsec-websocket-version: 13" in head
    assert app.scopes == []


async def test_frames_sent_before_the_handshake_completes_are_kept(layer: str) -> None:
    # A client should wait for the 101, but one that sends its first frame while the app
    # is still deciding must not lose it (or, cut mid-frame, garble the rest). (Bytes that
    # come with the request itself, uvicorn's HTTP side drops, whatever the layer.)
    called, decided = anyio.Event(), anyio.Event()
    app = Recorder()

    async def deciding(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        called.set()
        await decided.wait()
        await app(scope, receive, send)

    async with (
        serving(deciding, layer) as served,
        raw_client(served.address, handshake=False) as raw,
    ):
        key = base64.b64encode(os.urandom(16))
        await raw.send(
            b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: " + key + b"\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        with anyio.fail_after(10):
            await called.wait()
        early = frame(0x2, b"early")
        await raw.send(early[:3])
        await anyio.sleep(0.05)  # two TCP segments, likely; not asserted on
        await raw.send(early[3:])
        await anyio.sleep(0.05)
        decided.set()
        while b"\r\n\r\n" not in raw.buffer:
            await raw._fill()
        raw.buffer = raw.buffer.partition(b"\r\n\r\n")[2]
        assert await raw.frame() == (0x82, b"early")
        await raw.send(frame(0x2, b"late"))
        assert await raw.frame() == (0x82, b"late")
    assert app.received == [b"early", b"late"]


# -- framing -----------------------------------------------------------------------------

BAD_FRAMES: dict[str, tuple[list[bytes], int]] = {
    # name: (the client's frames after one good message, the close code RFC 6455 asks for)
    "unmasked": ([frame(0x2, b"abc", mask=False)], 1002),
    "reserved opcode 0x3": ([frame(0x3, b"abc")], 1002),
    "reserved control opcode 0xB": ([frame(0xB, b"abc")], 1002),
    "rsv1 without an extension": ([frame(0x2, b"abc", rsv=4)], 1002),
    "rsv3": ([frame(0x1, b"abc", rsv=1)], 1002),
    "a fragmented ping": ([frame(0x9, b"p", fin=False)], 1002),
    "a ping over 125 bytes": ([frame(0x9, bytes(126))], 1002),
    "a continuation with nothing to continue": ([frame(0x0, b"abc")], 1002),
    "a new message inside a fragmented one": (
        [frame(0x2, b"ab", fin=False), frame(0x2, b"cd")],
        1002,
    ),
    "invalid utf-8": ([frame(0x1, b"\xff\xfe")], 1007),
    "invalid utf-8 in fragments": (
        [frame(0x1, b"ok", fin=False), frame(0x0, b"\xc3", fin=False), frame(0x0, b"(")],
        1007,
    ),
    "too big": ([frame(0x2, bytes(1001))], 1009),
    "too big in fragments": (
        [
            frame(0x2, bytes(400), fin=False),
            frame(0x9, b"ping"),
            frame(0x0, bytes(400), fin=False),
            frame(0x0, bytes(400)),
        ],
        1009,
    ),
    "a close code that may not be sent": ([frame(0x8, close_payload(1005))], 1002),
    "a one-byte close": ([frame(0x8, b"\x03")], 1002),
    "bad frames in a row": ([frame(0x2, b"a", rsv=4), frame(0x0, b"b"), frame(0x1, b"\xff")], 1002),
}


@pytest.mark.parametrize("bad", list(BAD_FRAMES))
async def test_bad_framing_closes_with_the_rfc_code_and_nothing_reaches_the_app(
    bad: str, layer: str
) -> None:
    frames, code = BAD_FRAMES[bad]
    app = Recorder()
    async with serving(app, layer, ws_max_size=1000) as served:
        async with raw_client(served.address) as raw:
            await raw.send(frame(0x2, b"first"))
            assert await raw.frame() == (0x82, b"first")
            await raw.send(b"".join(frames))
            assert (await raw.close_frame())[0] == code
            assert await raw.eof() == b""  # nothing after the close frame
        await app.wait()
        await served.settled()
    assert app.received == [b"first"]
    assert app.disconnect["code"] == code
    assert not app.errors


async def test_fragments_with_control_frames_between_are_one_message(layer: str) -> None:
    app = Recorder()
    async with serving(app, layer) as served, raw_client(served.address) as raw:
        await raw.send(
            frame(0x1, "h\u00e9".encode()[:2], fin=False)  # "é" split across fragments
            + frame(0x9, b"ping 1")
            + frame(0x0, "h\u00e9".encode()[2:] + b" ", fin=False)
            + frame(0xA, b"unasked pong")
            + frame(0x0, b"", fin=False)
            + frame(0x9, b"ping 2")
            + frame(0x0, b"there")
            + frame(0x2, b"", fin=False)
            + frame(0x0, b"\x00\x01")
        )
        assert await raw.frame() == (0x8A, b"ping 1")
        assert await raw.frame() == (0x8A, b"ping 2")
        assert await raw.frame() == (0x81, "h\u00e9 there".encode())
        assert await raw.frame() == (0x82, b"\x00\x01")
    assert app.received[:2] == ["h\u00e9 there", b"\x00\x01"]


async def test_a_message_of_endless_empty_fragments_holds_no_memory() -> None:
    # Empty continuation frames never reach ws_max_size: kept as a list of parts, each
    # one costs the server memory, forever. (uvicorn's own layers keep such a list.)
    app = Recorder()
    chunk = frame(0x0, b"", fin=False) * 10_000  # 60 kB on the wire

    async def held_after(raw: Raw) -> int:
        for i in range(10):  # 100,000 fragments
            await raw.send(chunk + frame(0x9, b"%d" % i))
            assert await raw.frame() == (0x8A, b"%d" % i)  # the server has read them all
        return tracemalloc.get_traced_memory()[0]

    async with serving(app) as served, raw_client(served.address) as raw:
        await raw.send(frame(0x2, b"start", fin=False))
        tracemalloc.start()
        try:
            first = await held_after(raw)  # picows's read buffer has grown to fit a chunk
            second = await held_after(raw)
        finally:
            tracemalloc.stop()
        await raw.send(frame(0x0, b" end"))
        await raw.send(frame(0x8, close_payload(1000)))
        await raw.eof()
    assert second - first < 100_000  # a list of parts grows 800 kB here
    assert app.received == [b"start end"]


async def test_a_frame_over_ws_max_size_is_refused_at_its_header_and_never_buffered() -> None:
    # picows's read buffer grows to fit the largest frame and never shrinks (no API to
    # shrink it in picows 2.3), so `voicepipe serve` sets ws_max_size to the app's own
    # frame limit: a bigger frame is refused from its header, before it is read in.
    async def sizes(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        while (message := await receive())["type"] == "websocket.receive":
            size = len(message.get("bytes") or b"")
            del message  # the app keeps nothing: what is held is the layer's
            await send({"type": "websocket.send", "text": str(size)})

    held: dict[int, int] = {}
    for limit in (1 << 24, 65536):  # uvicorn's default, then a limit under the frame
        async with AsyncExitStack() as stack:
            served = await stack.enter_async_context(serving(sizes, ws_max_size=limit))
            raw = await stack.enter_async_context(raw_client(served.address))
            tracemalloc.start()
            try:
                await raw.send(frame(0x2, bytes(1 << 20)))  # 1 MiB
                if limit > 1 << 20:
                    assert await raw.frame() == (0x81, b"1048576")
                else:
                    assert (await raw.close_frame())[0] == 1009
                held[limit] = tracemalloc.get_traced_memory()[0]
            finally:
                tracemalloc.stop()
    assert held[1 << 24] > 1 << 20  # after the frame, the buffer still holds its size
    assert held[65536] < 256 * 1024


# -- closing -------------------------------------------------------------------------------


async def test_the_app_closing_sends_its_code_and_reason_and_waits_for_the_echo(
    layer: str,
) -> None:
    app = Recorder()
    async with serving(app, layer) as served:
        async with raw_client(served.address) as raw:
            await raw.send(frame(0x1, b"close 4003 going now"))
            assert await raw.close_frame() == (4003, "going now")
            await raw.send(frame(0x2, b"too late"))  # dropped: the app is past its close
            await raw.send(frame(0x8, close_payload(4003)))
            assert await raw.eof() == b""
        await app.wait()
        await served.settled()
    assert app.received == ["close 4003 going now"]
    assert app.disconnect["code"] == 4003


@pytest.mark.parametrize("close", ["code and reason", "no code"])
async def test_the_client_closing_reaches_the_app_and_is_echoed(close: str, layer: str) -> None:
    app = Recorder()
    payload = close_payload(4002, "bye") if close == "code and reason" else b""
    async with serving(app, layer) as served:
        async with raw_client(served.address) as raw:
            await raw.send(frame(0x2, b"x"))
            assert await raw.frame() == (0x82, b"x")
            await raw.send(frame(0x8, payload))
            code, _ = await raw.close_frame()
            assert await raw.eof() == b""
        await app.wait()
        await served.settled()
    if close == "code and reason":
        assert code == 4002
        assert (app.disconnect["code"], app.disconnect.get("reason")) == (4002, "bye")
    else:
        assert code in (None, 1000)
        assert app.disconnect["code"] == 1005


@ALSO_ON_UVLOOP
async def test_a_peer_that_never_answers_our_close_is_dropped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(uvicorn_ws, "CLOSE_TIMEOUT", 0.2)
    app = Recorder()
    async with serving(app) as served:
        async with raw_client(served.address) as raw:
            await raw.send(frame(0x1, b"close 1000 done"))
            assert await raw.close_frame() == (1000, "done")
            assert await raw.eof() == b""  # no echo from us: the server hangs up
        await app.wait()
        await served.settled()


@pytest.mark.parametrize(
    ("code", "reason"),
    [(4999, "\u00e9" * 61 + "!"), (1000, "r" * 124), (1005, ""), (1006, ""), (999, ""), (5000, "")],
)
async def test_a_close_that_may_not_go_on_the_wire_is_the_apps_error(
    code: int, reason: str, layer: str
) -> None:
    # A control frame holds at most 125 bytes (a code and 123 bytes of reason); 1005,
    # 1006 and codes outside 1000-4999 are never sent. Such a close raises in the app, as
    # in uvicorn's own layer, and the client gets a valid close frame (1011, on ours) or
    # none: never a malformed one.
    app = Recorder()
    valid = code == 4999  # the largest close there is
    async with serving(app, layer) as served:
        async with raw_client(served.address) as raw:
            await raw.send(frame(0x1, f"close {code} {reason}".encode()))
            if valid or layer == "picows":
                assert await raw.close_frame() == ((code, reason) if valid else (1011, ""))
                await raw.send(frame(0x8, close_payload(1000)))
            assert await raw.eof() == b""
        await app.wait()
    assert len(app.errors) == (0 if valid else 1)


@pytest.mark.parametrize("after", ["the client's close", "a bad frame"])
async def test_sending_after_the_client_left_raises_an_oserror(after: str, layer: str) -> None:
    # ASGI: send() on a closed connection raises an OSError subclass (uvicorn's
    # ClientDisconnected), which Starlette turns into WebSocketDisconnect; not the
    # RuntimeError of an app that sends after its own close.
    if layer != "picows" and after == "a bad frame":
        pytest.skip("uvicorn's own layer raises RuntimeError after a bad frame")
    raised: list[BaseException] = []
    ended = anyio.Event()

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        try:
            while (await receive())["type"] != "websocket.disconnect":
                pass
            await send({"type": "websocket.send", "bytes": b"one more"})
        except BaseException as exc:
            raised.append(exc)
        finally:
            ended.set()

    async with serving(app, layer) as served:
        async with raw_client(served.address) as raw:
            if after == "a bad frame":
                await raw.send(frame(0x1, b"\xff"))
            else:
                await raw.send(frame(0x8, close_payload(1000)))
            await raw.close_frame()
            with anyio.fail_after(10):
                await ended.wait()
        await served.settled()
    assert len(raised) == 1 and isinstance(raised[0], OSError), raised


# -- clients that do not read ---------------------------------------------------------------


@pytest.mark.parametrize("ending", ["returns", "closes"])
@ALSO_ON_UVLOOP
async def test_a_client_that_never_reads_is_dropped_and_its_connection_freed(
    ending: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The app sends until one send waits longer than its send timeout (voicepipe's
    # VOICEPIPE_SEND_TIMEOUT), then gives up: returns, or tries a close that cannot get
    # through either. The client holds its socket open and reads nothing, ever: the
    # server aborts the connection CLOSE_TIMEOUT later. (uvicorn's own layers wait for
    # the write buffer to drain, i.e. forever: the socket and the connection stay.)
    layer = "picows"
    monkeypatch.setattr(uvicorn_ws, "CLOSE_TIMEOUT", 0.5)
    sent = 0
    gave_up = anyio.Event()

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        nonlocal sent
        await receive()
        await send({"type": "websocket.accept"})
        try:
            while True:
                with anyio.fail_after(0.5):
                    await send({"type": "websocket.send", "bytes": bytes(64 * 1024)})
                sent += 1
        except TimeoutError:
            gave_up.set()
        if ending == "closes":
            with anyio.move_on_after(0.5):
                await send({"type": "websocket.close", "code": 1008})

    async with serving(app, layer) as served, raw_client(served.address, rcvbuf=4096):
        with anyio.fail_after(10):
            await gave_up.wait()
        assert sent < 200  # bounded: 12.5 MiB would have gone into the server's memory
        await served.settled()  # while the client still holds its socket


@ALSO_ON_UVLOOP
async def test_shutdown_does_not_wait_forever_for_a_client_that_never_reads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # uvicorn's shutdown (after voicepipe's drain, on SIGTERM) waits for every connection
    # to close, with no time limit by default: a client that reads nothing must not keep
    # the worker alive. Its app is blocked in send(), and learns the client is gone.
    monkeypatch.setattr(uvicorn_ws, "CLOSE_TIMEOUT", 0.3)
    raised: list[BaseException] = []

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        try:
            while True:
                await send({"type": "websocket.send", "bytes": bytes(64 * 1024)})
        except OSError as exc:
            raised.append(exc)

    with anyio.fail_after(10):
        async with AsyncExitStack() as client, serving(app) as served:  # client outlives server
            await client.enter_async_context(raw_client(served.address, rcvbuf=4096))
            while write_buffered(served) < 64 * 1024:  # noqa: ASYNC110 - over its high water
                await anyio.sleep(0.01)
    assert [type(exc).__name__ for exc in raised] == ["ClientDisconnected"]


def write_buffered(served: Served) -> int:
    """Bytes the server's connections hold for their clients, unsent."""
    return sum(c.transport.get_write_buffer_size() for c in served.server.server_state.connections)


async def test_a_ping_flood_is_answered_in_order(layer: str) -> None:
    app = Recorder()
    async with serving(app, layer) as served, raw_client(served.address) as raw:
        pings = [b"%d" % i for i in range(2000)]
        await raw.send(b"".join(frame(0x9, p) for p in pings) + frame(0x2, b"after"))
        pongs = [await raw.frame() for _ in pings]
        assert pongs == [(0x8A, p) for p in pings]
        assert await raw.frame() == (0x82, b"after")
    assert app.received == [b"after"]


@ALSO_ON_UVLOOP
async def test_a_ping_flood_from_a_client_that_never_reads_stays_bounded() -> None:
    # Each ping asks for a pong; a client that sends them and reads nothing must meet a
    # full TCP window, not grow the server's write buffer without end. (uvicorn's own
    # layers answer every ping they read, and read on: 30 MB buffered here, and more.)
    layer = "picows"
    app = Recorder()
    batch = frame(0x9, bytes(125)) * 1000  # 131 kB of pings
    async with serving(app, layer) as served, raw_client(served.address, rcvbuf=4096) as raw:
        sent = 0
        with anyio.move_on_after(3):  # the sends block once the server stops reading
            while sent < 32 * 1024 * 1024:
                await raw.send(batch)
                sent += len(batch)
        assert write_buffered(served) < 1024 * 1024, (sent, write_buffered(served))


# -- the app's failures and refusals ------------------------------------------------------


@pytest.mark.parametrize("when", ["before accept", "returns without accepting"])
async def test_an_app_that_fails_before_accept_answers_500(when: str, layer: str) -> None:
    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        await receive()
        if when == "before accept":
            raise RuntimeError("the app fell over")

    async with serving(app, layer) as served:
        async with raw_client(served.address, handshake=False) as raw:
            status, _ = await raw.handshake()
            body = await raw.eof()
        await served.settled()
    assert status == 500
    assert body == b"Internal Server Error"


async def test_an_app_that_fails_after_accept_closes_with_1011(layer: str) -> None:
    # uvicorn's own layer just drops the connection (the client sees 1006, as if the
    # network had failed); RFC 6455 has 1011 for this.
    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": "hello"})
        await receive()
        raise RuntimeError("the app fell over")

    async with serving(app, layer) as served:
        async with raw_client(served.address) as raw:
            assert await raw.frame() == (0x81, b"hello")
            await raw.send(frame(0x2, b"go"))
            rest = await raw.eof()
        await served.settled()
    assert rest == (close_payload_frame(1011) if layer == "picows" else b"")


@pytest.mark.parametrize("refusal", ["close", "denial", "denial in parts"])
async def test_an_app_refusing_the_handshake_answers_http(refusal: str, layer: str) -> None:
    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        await receive()
        if refusal == "close":
            await send({"type": "websocket.close", "code": 1008})
            return
        await send(
            {
                "type": "websocket.http.response.start",
                "status": 401,
                "headers": [(b"content-type", b"text/plain"), (b"x-why", b"token")],
            }
        )
        if refusal == "denial":
            await send({"type": "websocket.http.response.body", "body": b"no token"})
        else:
            await send({"type": "websocket.http.response.body", "body": b"no ", "more_body": True})
            await send({"type": "websocket.http.response.body", "body": b"token"})
        with pytest.raises(RuntimeError):  # nothing may follow the response
            await send({"type": "websocket.accept"})

    async with serving(app, layer) as served:
        async with raw_client(served.address, handshake=False) as raw:
            status, head = await raw.handshake()
            body = await raw.eof()
        await served.settled()
    headers = dict(
        (name.strip().lower(), value.strip())
        for name, _, value in (line.partition(b":") for line in head.split(b"\r\n")[1:])
    )
    if refusal == "close":
        assert (status, body) == (403, b"")
    else:
        assert (status, body) == (401, b"no token")
        assert headers[b"x-why"] == b"token"
        assert headers[b"content-length"] == b"8"


# -- the scope ------------------------------------------------------------------------------


async def test_subprotocols_are_offered_in_order_and_the_chosen_one_answered(layer: str) -> None:
    chosen: list[str | None] = ["b", None]

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        await receive()
        app.offered.append(scope["subprotocols"])  # type: ignore[attr-defined]
        await send({"type": "websocket.accept", "subprotocol": chosen.pop(0)})
        await receive()

    app.offered = []  # type: ignore[attr-defined]
    heads: list[bytes] = []
    async with serving(app, layer) as served:
        for offer in ("Sec-WebSocket-Protocol: a, b\r\nSec-WebSocket-Protocol: c\r\n", ""):
            async with raw_client(served.address, handshake=False) as raw:
                status, head = await raw.handshake("/", offer)
                assert status == 101
                heads.append(head.lower())
        await served.settled()
    assert app.offered == [["a", "b", "c"], []]  # type: ignore[attr-defined]
    assert b"\r\nsec-websocket-protocol: b" in heads[0]
    assert b"sec-websocket-protocol" not in heads[1]


SCOPE_KEYS = ("type", "scheme", "path", "raw_path", "root_path", "query_string", "subprotocols")


async def test_the_scope_matches_uvicorns_own_layer() -> None:
    # Percent-encoded paths (an encoded slash stays in raw_path only), query strings with
    # their encoding untouched, a root path, headers in order with their case folded.
    target = "/a%20b/c%2Fd/%C3%A9?q=%20x&y=%2F&y=2"
    headers = "X-Custom: One\r\nx-custom: two\r\n"
    scopes: dict[str, dict[str, Any]] = {}
    for layer in LAYERS:
        app = Recorder()
        async with serving(app, layer, root_path="/api") as served:
            async with raw_client(served.address, target, headers) as raw:
                await raw.send(frame(0x8, close_payload(1000)))
                await raw.eof()
            await app.wait()
        scopes[layer] = app.scopes[0]
    ours, theirs = scopes["picows"], scopes["websockets-sansio"]
    assert {k: ours[k] for k in SCOPE_KEYS} == {k: theirs[k] for k in SCOPE_KEYS}
    assert ours["path"] == "/api/a b/c/d/\u00e9"
    assert ours["raw_path"] == b"/api/a%20b/c%2Fd/%C3%A9"
    assert ours["query_string"] == b"q=%20x&y=%2F&y=2"
    assert [h for h in ours["headers"] if h[0] != b"sec-websocket-key"] == [
        h
        for h in theirs["headers"]
        if h[0] != b"sec-websocket-key"  # each client's own
    ]
    assert (b"x-custom", b"One") in ours["headers"]
    assert ours["client"][0] == ours["server"][0] == "127.0.0.1"


# -- clients that vanish, and what is left behind ----------------------------------------


@pytest.mark.parametrize("where", ["before the app answers", "mid-frame", "mid-fragments"])
async def test_a_client_that_vanishes_ends_the_session_cleanly(where: str, layer: str) -> None:
    connected = anyio.Event()
    answer = anyio.Event()
    log: list[Any] = []

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        await receive()
        connected.set()
        await answer.wait()
        try:
            await send({"type": "websocket.accept"})
            await send({"type": "websocket.send", "text": "welcome"})
        except OSError as exc:  # uvicorn's ClientDisconnected
            log.append(type(exc).__name__)
        while True:
            message = await receive()
            log.append(message)
            if message["type"] == "websocket.disconnect":
                return

    async with serving(app, layer) as served:
        async with raw_client(served.address, handshake=False) as raw:
            if where == "before the app answers":
                await raw.send(
                    b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                    b"Connection: Upgrade\r\nSec-WebSocket-Key: "
                    + base64.b64encode(os.urandom(16))
                    + b"\r\nSec-WebSocket-Version: 13\r\n\r\n"
                )
                with anyio.fail_after(10):
                    await connected.wait()
                await raw.aclose()
                with anyio.fail_after(10):
                    while served.connections:  # noqa: ASYNC110 - the server saw it go
                        await anyio.sleep(0.01)
            else:
                answer.set()
                assert (await raw.handshake())[0] == 101
                assert await raw.frame() == (0x81, b"welcome")
                if where == "mid-frame":
                    await raw.send(frame(0x2, bytes(1000))[:500])
                else:
                    await raw.send(frame(0x2, b"part", fin=False) + frame(0x0, b"more", fin=False))
        answer.set()
        await served.settled()
    assert log[-1]["type"] == "websocket.disconnect"
    # uvicorn's own layer reports 1005 for any drop after the handshake; it is 1006.
    assert log[-1]["code"] == (
        1005 if layer != "picows" and where != "before the app answers" else 1006
    )
    if where == "before the app answers":
        assert log[0] == "ClientDisconnected"
    assert not any(isinstance(m, dict) and m["type"] == "websocket.receive" for m in log)


async def test_many_connections_leave_nothing_behind(layer: str) -> None:
    # Sessions that end every way (the client's close, the app's, a bad frame, an abrupt
    # drop, a refusal), all at once: no connection, task or transport remains.
    app = Recorder()
    baseline = len(asyncio.all_tasks())

    async def one(served: Served, i: int) -> None:
        async with raw_client(served.address) as raw:
            await raw.send(frame(0x2, b"%d" % i))
            assert await raw.frame() == (0x82, b"%d" % i)
            kind = i % 4
            if kind == 0:
                await raw.send(frame(0x8, close_payload(1000)))
                await raw.close_frame()
            elif kind == 1:
                await raw.send(frame(0x1, b"close 1000 bye"))
                await raw.close_frame()
                await raw.send(frame(0x8, close_payload(1000)))
            elif kind == 2:
                await raw.send(frame(0x1, b"\xff"))
                await raw.close_frame()
            if kind != 3:
                await raw.eof()
            # kind 3: the client just goes

    async with serving(app, layer) as served:
        async with anyio.create_task_group() as tg:
            for i in range(60):
                tg.start_soon(one, served, i)
        await served.settled()
        assert len(asyncio.all_tasks()) == baseline + 1  # the server's own task
