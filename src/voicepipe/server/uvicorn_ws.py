"""A faster WebSocket layer for uvicorn: frames parsed by picows (Cython), served as ASGI.

uvicorn's own WebSocket protocols parse frames in Python (``websockets``'
sans-I/O parser is over half of what a 20 ms audio frame costs a voicepipe
server). :class:`PicowsProtocol` is a drop-in ``ws=`` class for uvicorn: the
HTTP side (h11, the handshake request, the ASGI app's accept or refusal, its
log lines) stays uvicorn's way, and once the app accepts, the connection is
handed to picows's ``WSProtocol``, which reads into its own buffer, unmasks
and parses frames in C and calls back per frame. The ASGI side is a queue and
one future per wait, plus voicepipe's ``TAP`` scope extension
(:data:`voicepipe.transports.websocket.TAP`): the app may take a message in
the socket's callback while it waits for one, saving a task wake-up, and
write a message at once when the socket can take it, without an ASGI message.

Same guarantees as uvicorn's protocols: frames over ``ws_max_size`` close the
connection with 1009, invalid UTF-8 text with 1007; a full receive queue
pauses reading (the client's TCP window closes); ``send`` waits while the
socket's write buffer is over its high-water mark (a client that stops
reading blocks its sender, so voicepipe's ``send_timeout`` drops it); a
silent peer is pinged after ``ws_ping_interval`` and dropped after
``ws_ping_timeout``; a server shutdown closes sessions with 1012.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from http import HTTPStatus
from typing import Any, cast
from urllib.parse import unquote

from picows import (
    WSAutoPingStrategy,
    WSCloseCode,
    WSFrame,
    WSListener,
    WSMsgType,
    WSTransport,
    WSUpgradeRequest,
    WSUpgradeResponse,
    WSUpgradeResponseWithListener,
)
from picows.picows import WSProtocol  # type: ignore[attr-defined]  # not in its stub
from uvicorn.config import Config
from uvicorn.protocols.utils import (
    ClientDisconnected,
    get_client_addr,
    get_local_addr,
    get_path_with_query_string,
    get_remote_addr,
    is_ssl,
)
from uvicorn.server import ServerState

from voicepipe.transports.websocket import TAP

__all__ = ["PicowsProtocol"]

PAUSE_AT = 8
"""Client messages queued for the app before reading the socket pauses."""

CLOSE_TIMEOUT = 10.0
"""Seconds the peer gets to answer our close frame (or to read what is queued for it when
we close) before the connection is aborted."""

# Python 3.11's Enum classes look members up through a __getattr__ hook: once, here.
_BINARY, _TEXT, _CONTINUATION, _CLOSE = (
    WSMsgType.BINARY,
    WSMsgType.TEXT,
    WSMsgType.CONTINUATION,
    WSMsgType.CLOSE,
)

SENDABLE_CLOSE_CODES = frozenset((1000, 1001, 1002, 1003, *range(1007, 1015), *range(3000, 5000)))
"""Close codes an endpoint may send (RFC 6455 7.4; 1005, 1006 and 1015 never go on the wire)."""

log = logging.getLogger("uvicorn.error")  # uvicorn's: the same lines, the same redaction


class _PicowsLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """picows's log: every connection is a debug line, and a client's bad frame (which
    picows answers with a close code) a warning, not an error of the server."""

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        if level == logging.INFO:
            level = logging.DEBUG
        elif level == logging.ERROR and str(msg).startswith("WS parser error"):
            level = logging.WARNING
        super().log(level, msg, *args, **kwargs)


# Not a logging.Logger: picows would make a new child Logger for every connection.
_picows_log = _PicowsLog(logging.getLogger("voicepipe.server.picows"))


class PicowsProtocol(WSListener, asyncio.Protocol):
    """One WebSocket connection under uvicorn (``ws=PICOWS``); see the module's docstring.

    uvicorn's protocol until the app accepts, then picows's listener (its ``on_ws_*``
    callbacks), which saves a call per frame over a listener object of its own."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        if not config.loaded:
            config.load()  # pragma: no cover - uvicorn loads it first
        self.config = config
        self.app = config.loaded_app
        self.loop = _loop or asyncio.get_event_loop()
        self.app_state = app_state
        self.connections = server_state.connections
        self.tasks = server_state.tasks
        self.default_headers = server_state.default_headers
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.ws: WSTransport | None = None  # picows's, once accepted
        self.scope: dict[str, Any] = {}
        self.request = b""
        self.handshake_complete = False  # accepted, refused, or the client left first
        self.close_sent = False
        self.app_closed = False  # the close was the app's own `websocket.close`
        self.disconnected = False
        self.close_timer: asyncio.TimerHandle | None = None
        self.messages: deque[dict[str, Any]] = deque()
        self.waiter: asyncio.Future[None] | None = None
        self.read_paused = False
        self.pongs_unread = False  # reading paused: the peer pings but reads no pongs
        self.writable: asyncio.Future[None] | None = None  # set while the socket is full
        self.fragments: bytearray | None = None  # a fragmented message, so far
        self.fragments_type = _BINARY
        self.response: tuple[int, list[tuple[bytes, bytes]], bytes] | None = None
        self.tap: Callable[[bytes], bool] | None = None  # voicepipe's TAP extension
        self.addresses: tuple[Any, Any, bool] | None = None  # server, client, TLS

    # -- uvicorn's side: the upgrade request, until the app answers it ----------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.connections.add(self)  # type: ignore[arg-type]  # uvicorn lists its own classes
        # uvicorn's HTTP protocol, which read the request, has the addresses already: each
        # costs a socket object and system calls on uvloop.
        http = transport.get_protocol()
        server, client = getattr(http, "server", False), getattr(http, "client", False)
        if server is not False and client is not False:
            self.addresses = (server, client, getattr(http, "scheme", None) == "https")

    def data_received(self, data: bytes) -> None:
        if self.scope:  # frames sent before our 101 wait for picows (a few; then we stop)
            if not self.handshake_complete:
                self.request += data
                if len(self.request) > 65536:
                    self.transport.pause_reading()
            return
        self.request += data
        if b"\r\n\r\n" in self.request:
            self._start(self.request)

    def _start(self, request: bytes) -> None:
        head, _, _ = request.partition(b"\r\n\r\n")
        line, *fields = head.split(b"\r\n")
        _, target, _ = line.split(b" ", 2)
        headers = []
        subprotocols: list[str] = []
        for field in fields:
            name, _, value = field.partition(b":")
            name = name.strip().lower()
            value = value.strip()
            headers.append((name, value))
            if name == b"sec-websocket-protocol":
                subprotocols.extend(p.strip() for p in value.decode("latin-1").split(","))
        raw_path, _, query = target.partition(b"?")
        root = self.config.root_path
        if self.addresses is None:
            transport = self.transport
            self.addresses = (
                get_local_addr(transport),
                get_remote_addr(transport),
                is_ssl(transport),
            )
        server, client, tls = self.addresses
        self.scope = {
            "type": "websocket",
            "asgi": {"version": self.config.asgi_version, "spec_version": "2.4"},
            "http_version": "1.1",
            "scheme": "wss" if tls else "ws",
            "server": server,
            "client": client,
            "root_path": root,
            "path": root + unquote(raw_path.decode("ascii")),
            "raw_path": root.encode("ascii") + raw_path,
            "query_string": query,
            "headers": headers,
            "subprotocols": subprotocols,
            "state": self.app_state.copy(),
            "extensions": {
                "websocket.http.response": {},
                TAP: {"set": self._set_tap, "send": self._send_nowait},
            },
        }
        version = dict(headers).get(b"sec-websocket-version")
        if version != b"13":
            # RFC 6455 4.2.2: a version we do not speak is refused (426, none: 400), naming
            # the one we do, as uvicorn's wsproto layer does; picows accepted any. The app
            # never sees the request.
            self._respond(
                HTTPStatus.UPGRADE_REQUIRED if version else HTTPStatus.BAD_REQUEST,
                [(b"Sec-WebSocket-Version", b"13")],
                b"Failed to open a WebSocket connection: "
                b"only Sec-WebSocket-Version 13 is supported.\n",
            )
            return
        self._put({"type": "websocket.connect"})
        task = self.loop.create_task(self.run_asgi())
        task.add_done_callback(self.tasks.discard)
        self.tasks.add(task)

    def _accept(self, message: dict[str, Any]) -> None:
        """The app accepted: answer 101 through picows and hand it the socket."""
        if log.isEnabledFor(logging.INFO):
            log.info(
                '%s - "WebSocket %s" [accepted]',
                get_client_addr(self.scope),  # type: ignore[arg-type]
                get_path_with_query_string(self.scope),  # type: ignore[arg-type]
            )
        extra: list[tuple[str, str]] = [
            (name.decode("latin-1"), value.decode("latin-1"))
            for name, value in (*self.default_headers, *message.get("headers", ()))
        ]
        if message.get("subprotocol"):
            extra.append(("Sec-WebSocket-Protocol", message["subprotocol"]))

        def accept(request: WSUpgradeRequest) -> WSUpgradeResponseWithListener:
            return WSUpgradeResponseWithListener(
                WSUpgradeResponse.create_101_response(extra_headers=extra), self
            )

        interval = self.config.ws_ping_interval
        timeout = self.config.ws_ping_timeout
        ping = bool(interval and interval > 0)
        protocol = WSProtocol(
            None,  # host_port (client side only)
            "/",  # path (client side only)
            False,  # server side
            accept,
            _picows_log,
            True,  # disconnect on a listener's exception
            None,  # no handshake timeout: uvicorn already read the request
            ping,
            interval if ping else 20.0,  # ping a peer silent this long,
            min(timeout or interval or 20.0, interval or 20.0),  # drop it if no pong
            WSAutoPingStrategy.PING_WHEN_IDLE,
            False,  # pings are answered in on_ws_frame
            self.config.ws_max_size,
            None,
            4096,
        )
        self.handshake_complete = True
        protocol.connection_made(self.transport)
        request, self.request = self.request, b""
        while request:  # picows checks the upgrade and writes the 101
            buffer = protocol.get_buffer(-1)  # it grows as it fills: a request may not fit
            size = min(len(buffer), len(request))
            buffer[:size] = request[:size]
            protocol.buffer_updated(size)
            request = request[size:]
        if self.ws is None:  # picows refused the request (400: no Sec-WebSocket-Key, say)
            self.transport.close()
            self._lost(1006)  # the app's next send raises ClientDisconnected
            return
        self.transport.set_protocol(protocol)
        self.transport.resume_reading()  # if early frames paused it

    def connection_lost(self, exc: Exception | None) -> None:
        """The socket closed before the app accepted (after, picows reports it)."""
        self._lost(1006)

    def _lost(self, code: int, reason: str = "") -> None:
        if self.disconnected:
            return
        self.disconnected = True
        self.handshake_complete = True
        self.connections.discard(self)
        self._put({"type": "websocket.disconnect", "code": code, "reason": reason})
        if self.close_timer is not None:
            self.close_timer.cancel()
            self.close_timer = None
        self._wake_writer()

    def eof_received(self) -> bool | None:
        return None

    # -- picows's side: frames in --------------------------------------------------

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.ws = transport

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        kind = frame.msg_type
        if transport.is_close_frame_sent and not self.close_sent:
            return  # picows refused a frame (1009, 1002) and is closing; its parser is spent
        if frame.rsv1 or frame.rsv2 or frame.rsv3:  # no extension was negotiated
            self._fail(WSCloseCode.PROTOCOL_ERROR, "reserved bits set")
            return
        if kind is _BINARY or kind is _TEXT:
            if self.fragments is not None:
                self._fail(WSCloseCode.PROTOCOL_ERROR, "a new message inside a fragmented one")
                return
            if frame.fin:
                if kind is _BINARY:
                    data = frame.get_payload_as_bytes()
                    tap = self.tap  # inline: the common frame
                    if (
                        tap is None
                        or self.waiter is None
                        or self.messages
                        or self.close_sent
                        or not tap(data)
                    ):
                        self._message(data, None)
                else:
                    self._text(frame.get_payload_as_bytes())
                return
            # One buffer, not a list of parts: empty fragments must not cost memory.
            self.fragments = bytearray(frame.get_payload_as_memoryview())
            self.fragments_type = kind
        elif kind is _CONTINUATION:
            fragments = self.fragments
            if fragments is None:
                self._fail(WSCloseCode.PROTOCOL_ERROR, "a continuation with nothing to continue")
                return
            if len(fragments) + frame.payload_size > self.config.ws_max_size:
                self._fail(WSCloseCode.MESSAGE_TOO_BIG, "message too big")
                return
            fragments += frame.get_payload_as_memoryview()
            if frame.fin:
                data = bytes(fragments)
                self.fragments = None
                if self.fragments_type is _BINARY:
                    self._message(data, None)
                else:
                    self._text(data)
        elif kind is _CLOSE:
            self._on_close(frame)
        elif kind is WSMsgType.PING:
            self._on_ping(frame)

    def _text(self, data: bytes) -> None:
        try:
            text = data.decode()
        except UnicodeDecodeError:
            self._fail(WSCloseCode.INVALID_TEXT, "invalid UTF-8")
            return
        self._message(None, text)

    def _set_tap(self, handler: Callable[[bytes], bool] | None) -> None:
        self.tap = handler

    def _send_nowait(self, message: bytes | str) -> bool:
        """TAP's ``send``: write ``message`` now if :meth:`send` would not wait or refuse."""
        ws = self.ws
        if ws is None or self.writable is not None or self.close_sent or self.disconnected:
            return False
        if isinstance(message, str):
            ws.send(_TEXT, message.encode())
        else:
            ws.send(_BINARY, message)
        return True

    def _message(self, data: bytes | None, text: str | None) -> None:
        if self.close_sent:
            return  # the app is past `websocket.close`: only the peer's close matters
        if text is None:
            self._put({"type": "websocket.receive", "bytes": data})
        else:
            self._put({"type": "websocket.receive", "text": text})
        if len(self.messages) >= PAUSE_AT and not self.read_paused:
            self.read_paused = True
            self.transport.pause_reading()

    def _on_close(self, frame: WSFrame) -> None:
        assert self.ws is not None
        if self.close_sent:  # the peer echoed ours: the closing handshake is complete
            self.ws.disconnect()
            return
        code = frame.get_close_code().value or 1005  # 1005: the close frame had no code
        reason = frame.get_close_reason() or ""
        self._put({"type": "websocket.disconnect", "code": code, "reason": reason})
        self.close_sent = True
        self.ws.send_close(WSCloseCode(code if code != 1005 else 1000))  # the echo
        self.ws.disconnect()

    def _on_ping(self, frame: WSFrame) -> None:
        assert self.ws is not None
        self.ws.send_pong(frame.get_payload_as_bytes())
        if self.writable is not None and not self.pongs_unread:
            # The peer does not read our pongs: read none of its pings until it does
            # (a ping flood would grow the write buffer without end).
            self.pongs_unread = True
            self.transport.pause_reading()

    def _fail(self, code: WSCloseCode, reason: str) -> None:
        assert self.ws is not None
        self._put({"type": "websocket.disconnect", "code": code.value, "reason": reason})
        self.close_sent = True
        self.ws.send_close(code, reason.encode())
        self.ws.disconnect()

    # -- the ASGI side -----------------------------------------------------------------

    def _put(self, message: dict[str, Any]) -> None:
        self.messages.append(message)
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            if not waiter.done():
                waiter.set_result(None)

    async def receive(self) -> dict[str, Any]:
        while not self.messages:
            self.waiter = waiter = self.loop.create_future()
            try:
                await waiter
            finally:
                if self.waiter is waiter:
                    self.waiter = None
        message = self.messages.popleft()
        if self.read_paused and len(self.messages) < PAUSE_AT // 2:
            self.read_paused = False
            if not self.pongs_unread:
                self.transport.resume_reading()
        return message

    async def send(self, message: dict[str, Any]) -> None:
        while self.writable is not None and not self.disconnected:
            await asyncio.shield(self.writable)
        if self.disconnected:
            raise ClientDisconnected()
        kind = message["type"]
        if self.ws is None:
            self._answer_handshake(message)
            return
        if self.close_sent:
            if not self.app_closed:  # the peer closed (or broke the protocol): it is gone
                raise ClientDisconnected()
            raise RuntimeError(
                f"Unexpected ASGI message {kind!r}, after sending 'websocket.close'."
            )
        if kind == "websocket.send":
            data = message.get("bytes")
            if data is not None:
                self.ws.send(_BINARY, data)
            elif message.get("text") is not None:
                self.ws.send(_TEXT, message["text"].encode())
        elif kind == "websocket.close":
            code = message.get("code", 1000)
            reason = message.get("reason") or ""
            payload = reason.encode()
            if code not in SENDABLE_CLOSE_CODES or len(payload) > 123:  # a control frame's limit
                raise RuntimeError(
                    f"Invalid 'websocket.close': code {code}, a reason of {len(payload)} bytes "
                    "(use 1000-1003, 1007-1014 or 3000-4999, and at most 123 bytes)."
                )
            self._put({"type": "websocket.disconnect", "code": code, "reason": reason})
            self.ws.send_close(WSCloseCode(code), payload)
            self.close_sent = self.app_closed = True
            if self.read_paused:  # read on, for the peer's close frame
                self.read_paused = False
                if not self.pongs_unread:
                    self.transport.resume_reading()
            self.close_timer = self.loop.call_later(CLOSE_TIMEOUT, self.transport.abort)
        else:
            raise RuntimeError(
                f"Expected ASGI message 'websocket.send' or 'websocket.close', but got {kind!r}."
            )

    def _answer_handshake(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if self.response is not None:
            if kind != "websocket.http.response.body":
                raise RuntimeError(f"Expected 'websocket.http.response.body', got {kind!r}.")
            status, headers, body = self.response
            body += message.get("body", b"")
            self.response = (status, headers, body)
            if not message.get("more_body", False):
                self._respond(status, headers, body)
            return
        if self.handshake_complete:
            raise RuntimeError(f"Unexpected ASGI message {kind!r}, after the handshake.")
        if kind == "websocket.accept":
            self._accept(message)
        elif kind == "websocket.close":
            self._respond(HTTPStatus.FORBIDDEN, [], b"")
        elif kind == "websocket.http.response.start":
            status = message["status"]
            if not 100 <= status < 600:
                raise RuntimeError(f"Invalid HTTP status code '{status}' in response.")
            self.response = (status, list(message.get("headers", [])), b"")
        else:
            raise RuntimeError(
                "Expected ASGI message 'websocket.accept', 'websocket.close' or "
                f"'websocket.http.response.start' but got {kind!r}."
            )

    def _respond(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        """Refuse the upgrade with a plain HTTP response, then close."""
        if log.isEnabledFor(logging.INFO):
            log.info(
                '%s - "WebSocket %s" %d',
                get_client_addr(self.scope),  # type: ignore[arg-type]
                get_path_with_query_string(self.scope),  # type: ignore[arg-type]
                status,
            )
        self.handshake_complete = True
        self.close_sent = True
        self._put({"type": "websocket.disconnect", "code": 1006})
        phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else ""
        names = {name.lower() for name, _ in headers}
        lines = [f"HTTP/1.1 {status} {phrase}".encode()]
        lines += [name + b": " + value for name, value in (*self.default_headers, *headers)]
        if b"content-type" not in names:
            lines.append(b"content-type: text/plain; charset=utf-8")
        if b"content-length" not in names:
            lines.append(b"content-length: %d" % len(body))
        lines.append(b"connection: close")
        self.transport.write(b"\r\n".join(lines) + b"\r\n\r\n" + body)
        self.transport.close()

    async def run_asgi(self) -> None:
        try:
            result = await self.app(self.scope, self.receive, self.send)
        except ClientDisconnected:
            pass
        except BaseException:
            log.exception("Exception in ASGI application\n")
            self._internal_error()
        else:
            if not self.handshake_complete:
                log.error("ASGI callable returned without completing handshake.")
                self._internal_error()
            elif result is not None:
                log.error("ASGI callable should return None, but returned '%s'.", result)
        if self.close_timer is None:
            self._close_transport()

    def _internal_error(self) -> None:
        if self.ws is not None:
            if not self.close_sent:  # after accept: the client learns it was not the network
                self.close_sent = True
                self.ws.send_close(WSCloseCode.INTERNAL_ERROR)
        elif not self.handshake_complete and self.response is None:
            self._respond(500, [], b"Internal Server Error")

    def _close_transport(self) -> None:
        """Close once what is queued is out, or abort after ``CLOSE_TIMEOUT``: a client
        that reads nothing would otherwise hold the socket (and its buffer) forever."""
        if self.ws is not None:
            self.ws.disconnect()
        else:
            self.transport.close()
        if not self.disconnected and self.close_timer is None:
            self.close_timer = self.loop.call_later(CLOSE_TIMEOUT, self.transport.abort)

    def shutdown(self) -> None:
        """uvicorn is exiting: close with 1012 (service restart)."""
        if self.close_sent or self.disconnected:
            self._close_transport()
            return
        if self.ws is not None:
            self._put({"type": "websocket.disconnect", "code": 1012})
            self.ws.send_close(WSCloseCode.SERVICE_RESTART)
            self.close_sent = True
        else:
            self._internal_error()
        self._close_transport()

    # -- flow control from picows --------------------------------------------------

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        sent = transport.close_handshake.sent if transport.close_handshake else None
        if not self.close_sent and sent is not None:
            self._lost(sent.code.value, sent.reason)  # picows refused a frame
        else:
            self._lost(1005 if self.close_sent else 1006)

    def pause_writing(self) -> None:
        if self.writable is None:
            self.writable = self.loop.create_future()

    def resume_writing(self) -> None:
        self._wake_writer()
        if self.pongs_unread:
            self.pongs_unread = False
            if not self.read_paused:
                self.transport.resume_reading()

    def _wake_writer(self) -> None:
        writable, self.writable = self.writable, None
        if writable is not None and not writable.done():
            writable.set_result(None)
