"""Serve one voice session over a Starlette/FastAPI WebSocket: the transport core.

::

    @app.websocket("/listen")
    async def listen(websocket: WebSocket) -> None:
        await serve(websocket, Pipeline(stt=stt, llm=llm, tts=tts, realtime_lead=0.2))

What the frames mean is the business of a :class:`~voicepipe.transports.dialect.Dialect`
(``dialect=``; voicepipe's own protocol by default, ``docs/server.md``). The
core does the rest, the same for every dialect:

* **One ordered writer.** Every frame for the client (the pipeline's events
  as the dialect shapes them, errors about the client's input, the close)
  goes through one queue and one task. So ``session`` is the first frame,
  nothing a client frame provokes is sent after ``finish``, and nothing at
  all after the close. On a WebSocket layer that offers ``send`` in the
  :data:`TAP` extension (``voicepipe serve``'s), a frame with nothing queued
  or being sent ahead of it, for a socket that can take it, is written at
  once instead, in the same order, without waking the writer.
* **Every send is bounded** by ``send_timeout``: a client that stops reading
  is dropped (without a close frame, which could not get through either),
  checked by a watchdog every quarter of ``send_timeout`` (at most every second).
* **The time limit ends the session on time** (``max_seconds``): the client
  gets an ``error`` event and close 1008 if it still reads, and within a
  second of the limit the session is over and its resources freed either way.
* **Limits**: a frame over ``max_frame_bytes`` closes with 1009; audio over
  ``max_audio_bytes`` (PCM as the pipeline hears it, whatever the codec) ends
  the session with an ``error`` event and 1008.
* **A server that drains** sets ``shutdown``: within a second the input
  ends as if the client had stopped, the reply in progress is finished, and
  the session ends with ``finish`` reason ``shutdown`` and close 1001.
* Nothing a client sends can raise out of :func:`serve`; if the server itself
  fails, the error is logged and the socket closed with 1011, and one
  session's failure never reaches another.

How it runs: one task group per session holding the reader (client frames
to the dialect, which feeds the pipeline's input streams), the event task
(the pipeline's events to the dialect, which queues frames) and the
watchdog (stalled sends, the time limit, the drain); the writer is the
task that called :func:`serve`. Whatever ends
the session (``finish``, the client leaving, a limit) cancels the group, and
leaving it closes the pipeline and with it every provider stream.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any

import anyio
from anyio.abc import ObjectReceiveStream, TaskGroup
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from voicepipe.errors import Stage
from voicepipe.events import ErrorEvent, Event, Finish, Session
from voicepipe.pipeline import Pipeline
from voicepipe.transports.dialect import Dialect
from voicepipe.transports.dialects.voicepipe import VoicepipeDialect
from voicepipe.transports.inbox import Inbox

__all__ = ["DEFAULT_MAX_FRAME_BYTES", "DEFAULT_SEND_TIMEOUT", "TAP", "serve"]

log = logging.getLogger("voicepipe.transports.websocket")

DEFAULT_MAX_FRAME_BYTES = 1 << 20
"""Largest frame a client may send (1 MiB); a bigger one closes the socket with 1009."""

DEFAULT_SEND_TIMEOUT = 10.0
"""Seconds one frame may wait for the client to make room; then the client is dropped."""

CLOSE_GRACE = 1.0
"""Seconds a client gets to receive the reason when its session is ended for it."""

OUTBOX_FRAMES = 64
"""Frames that may wait for the writer before whoever queues them waits too."""

TAP = "voicepipe.tap"
"""An ASGI scope extension a WebSocket layer may offer (``voicepipe serve``'s does).

``scope["extensions"][TAP]["set"](handler)``, where ``handler(data) -> bool`` is
called with a client's binary message in the socket's callback while the app waits
in ``receive()`` with nothing queued; True means it took the message, which then
never reaches ``receive()``. ``set(None)`` removes it.
The reader uses it for the common frame (audio the pipeline hears as is): one
task wake-up per frame instead of two.

``scope["extensions"][TAP]["send"](message) -> bool`` (optional), once the app has
accepted: write ``message`` (``bytes``: a binary message, ``str``: a text one) now,
as ``websocket.send`` would, if the socket can take it without waiting (its buffer
under the high-water mark, no close sent, the client there), and return True; else
return False and write nothing (the app then sends the usual way, which waits).
The writer uses it for every frame with nothing queued ahead of it: no task
wake-up and no trip through the ASGI send chain per frame."""

_GONE = (WebSocketDisconnect, RuntimeError, OSError)
"""What sending raises once the client is gone (WebSocketDisconnected is a RuntimeError)."""


async def serve(
    websocket: WebSocket,
    pipeline: Pipeline,
    *,
    dialect: Callable[[], Dialect] = VoicepipeDialect,
    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
    max_seconds: float | None = None,
    max_audio_bytes: int | None = None,
    send_timeout: float = DEFAULT_SEND_TIMEOUT,
    input_buffer: int = 50,
    shutdown: anyio.Event | None = None,
) -> None:
    """Run ``pipeline`` as one session over ``websocket`` (accepted here if it is not yet,
    with the first of the dialect's ``subprotocols`` the client offered).

    Returns when the session is over and the socket closed (or the client
    dropped). ``dialect`` makes the connection's
    :class:`~voicepipe.transports.dialect.Dialect` (a class, or any factory).
    ``input_buffer`` is how many input chunks may wait for the pipeline before
    reading the socket pauses. Once ``shutdown`` is set (the server draining),
    the input ends (within a second), and the session, its reply finished,
    closes 1001 with ``finish`` reason ``shutdown``.
    """
    speaker = dialect()
    if websocket.application_state is WebSocketState.CONNECTING:
        offered = websocket.scope.get("subprotocols") or ()
        chosen = next((p for p in speaker.subprotocols if p in offered), None)
        await websocket.accept(subprotocol=chosen)
    connection = _Connection(
        websocket,
        pipeline,
        speaker,
        max_frame_bytes=max_frame_bytes,
        max_audio_bytes=max_audio_bytes,
        send_timeout=send_timeout,
        input_buffer=input_buffer,
    )
    try:
        await connection.run(max_seconds, shutdown)
    except Exception:
        log.exception("session %s failed", pipeline.session_id)
        await connection.close_now(1011, "internal error")
    finally:
        with anyio.move_on_after(2 * CLOSE_GRACE, shield=True):
            await connection.dialect.aclose()


class _Gate(enum.Enum):
    """Who queues a frame, which decides until when it may still go out."""

    INPUT = "input"  # provoked by a client frame: not after `finish` was queued
    EVENTS = "events"  # a pipeline event: not once the session is being closed
    FINAL = "final"  # the last words of a session that is being closed


@dataclass(frozen=True, slots=True)
class _Close:
    code: int
    reason: str


class _Connection:
    """One session's socket: the writer, the reader, the event task and the timer."""

    def __init__(
        self,
        websocket: WebSocket,
        pipeline: Pipeline,
        dialect: Dialect,
        *,
        max_frame_bytes: int,
        max_audio_bytes: int | None,
        send_timeout: float,
        input_buffer: int,
    ) -> None:
        self.websocket = websocket
        self.pipeline = pipeline
        self.dialect = dialect
        self.max_frame_bytes = max_frame_bytes
        self.max_audio_bytes = max_audio_bytes
        self.send_timeout = send_timeout
        self.input_buffer = input_buffer
        self.audio_bytes = 0
        self.input_ended = False
        self.finishing = False  # the dialect is shaping `finish`: input errors are dropped
        self.closing = False  # the session is ending: only FINAL frames are queued
        self.close_queued = False
        self.gone = False  # the client left, or stopped reading: nothing can be sent
        self.sending_since: float | None = None  # when the frame being sent was taken
        self.done = anyio.Event()  # the writer has stopped
        self.finish_reason = "end_of_input"
        self.shutting_down = False  # the server drains: the input was ended for the client
        # The writer's queue. Not a memory object stream: its send() yields to the event
        # loop before it enqueues, and an input error could then slip in after `finish`.
        # Here the check of the gates and the enqueueing happen in one step.
        self._outbox: deque[str | bytes | _Close] = deque()
        self._event: type[anyio.Event] = type(self.done)  # the backend's, looked up once
        self._wake = self._event()  # set when the outbox gets an item
        self._room = self._event()  # set when the outbox is back under OUTBOX_FRAMES
        self._audio: Inbox[bytes] = Inbox(input_buffer)
        self._text: Inbox[str] = Inbox(input_buffer)
        self._tg: TaskGroup | None = None
        self._set_tap: Callable[[Callable[[bytes], bool] | None], None] | None = None
        extension = (websocket.scope.get("extensions") or {}).get(TAP) or {}
        self._send_nowait: Callable[[str | bytes], bool] | None = extension.get("send")
        # Attributes, not a dict by gate: an Enum hashes in Python, and FINAL is rare.
        self._input_link = _Link(self, _Gate.INPUT)
        self._events_link = _Link(self, _Gate.EVENTS)

    async def run(self, max_seconds: float | None, shutdown: anyio.Event | None = None) -> None:
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                tg.start_soon(self._watch, max_seconds, shutdown)
                # In a task of its own, not the ASGI app's: every event wakes this task,
                # and waking the app's resumes its whole stack of middleware and routing.
                tg.start_soon(self._session, tg)
                # The writer is the app's task: with a layer that writes frames at once
                # (TAP's `send`) it wakes only for a full socket and the close.
                await self._write_loop()
        finally:
            self.end_input()

    async def _session(self, tg: TaskGroup) -> None:
        await self.dialect.open(self._events_link)
        if self.dialect.text_mode:
            session = self.pipeline.run_text(self._text)
        else:
            session = self.pipeline.run(self._audio)
        async with session as events:
            await self._event_loop(events, tg)
        code = 1001 if self.finish_reason == "shutdown" else 1000
        # The writer sends what is queued, closes, and ends the session.
        await self._queue(_Close(code, self.finish_reason), _Gate.FINAL)

    def end(self) -> None:
        """Stop everything of this session now."""
        if self._tg is not None:
            self._tg.cancel_scope.cancel()

    # -- server -> client: one queue, one writer -------------------------------------

    async def _queue(self, item: str | bytes | _Close, gate: _Gate) -> None:
        if self.close_queued or self.gone:
            return
        if gate is _Gate.INPUT and (self.finishing or self.closing):
            return
        if gate is _Gate.EVENTS and self.closing:
            return
        if isinstance(item, _Close):
            self.close_queued = self.closing = True
        elif (
            self._send_nowait is not None
            and not self._outbox
            and self.sending_since is None
            and self._send_nowait(item)
        ):
            return  # written at once: nothing was queued or being sent ahead of it
        self._outbox.append(item)
        self._wake.set()
        while len(self._outbox) > OUTBOX_FRAMES and not self.done.is_set():
            if self._room.is_set():
                self._room = self._event()
            await self._room.wait()  # the client is slow: whoever queues waits

    async def _next(self) -> str | bytes | _Close:
        while not self._outbox:
            self._wake = self._event()
            await self._wake.wait()
        item = self._outbox.popleft()
        if len(self._outbox) <= OUTBOX_FRAMES:
            self._room.set()
        return item

    async def _write_loop(self) -> None:
        try:
            while True:
                item = await self._next()
                if isinstance(item, _Close):
                    await self.close_now(item.code, item.reason)
                    return
                self.sending_since = time.monotonic()  # _watch_sends bounds the send
                try:
                    if isinstance(item, bytes):
                        await self.websocket.send_bytes(item)
                    else:
                        await self.websocket.send_text(item)
                except _GONE:
                    self.gone = True
                    return
                self.sending_since = None
        finally:
            self.done.set()
            self._room.set()
            self.end()

    async def _watch(self, max_seconds: float | None, shutdown: anyio.Event | None) -> None:
        """The session's clock, one task for all of it: drop a client whose frame has
        waited ``send_timeout`` to be sent (it reads nothing), checking every quarter of
        it or every second (cheaper than a timeout around every send, which costs a
        cancel scope and a timer per frame); end the input once ``shutdown`` is set (the
        server drains: the session then finishes as after ``stop``), within the same
        period; end the session at ``max_seconds``."""
        period = min(self.send_timeout / 4, 1.0)
        deadline = math.inf if max_seconds is None else anyio.current_time() + max_seconds
        while True:
            # A sleep, then a look at `shutdown`: waiting on it with a timeout costs a
            # cancel scope and a cancellation a tick, about four times a sleep's CPU.
            await anyio.sleep(max(0.0, min(period, deadline - anyio.current_time())))
            if shutdown is not None and shutdown.is_set():
                shutdown = None
                self.shutting_down = True
                self.end_input()
            since = self.sending_since
            if since is not None and time.monotonic() - since >= self.send_timeout:
                log.info(
                    "session %s: the client read nothing for %g s; dropped",
                    self.pipeline.session_id,
                    self.send_timeout,
                )
                self.gone = True  # no close frame could get through either
                self.end()
                return
            if max_seconds is not None and anyio.current_time() >= deadline:
                await self._time_up(max_seconds)
                return

    async def close_now(self, code: int, reason: str) -> None:
        """Send the close frame (bounded), unless the client is gone."""
        if self.gone:
            return
        self.gone = True  # nothing goes out after a close
        with anyio.move_on_after(CLOSE_GRACE), contextlib.suppress(*_GONE):
            await self.websocket.close(code, reason.encode()[:123].decode(errors="ignore"))

    async def fail(self, message: str, stage: Stage = "transport", code: int = 1008) -> None:
        """End the session: a fatal ``error`` event (shaped by the dialect), then close."""
        if self.closing or self.finishing:
            return  # already ending; nothing may follow `finish`
        self.closing = True
        event = ErrorEvent(stage=stage, message=message, recoverable=False)
        await self.dialect.on_event(event, _Link(self, _Gate.FINAL))
        await self._queue(_Close(code, message), _Gate.FINAL)

    async def _time_up(self, seconds: float) -> None:
        # The reason reaches a client that still reads; one that does not is not waited for.
        with anyio.move_on_after(min(self.send_timeout, CLOSE_GRACE)):
            await self.fail(f"the session reached its {seconds:g}-second limit")
            await self.done.wait()
        self.end()

    async def _event_loop(self, events: ObjectReceiveStream[Event], tg: TaskGroup) -> None:
        link = self._events_link
        async for event in events:
            if isinstance(event, Finish):
                if self.shutting_down and event.reason == "end_of_input":
                    event = Finish(reason="shutdown")  # the drain ended the input
                self.finish_reason = event.reason
                self.finishing = True
            await self.dialect.on_event(event, link)
            if isinstance(event, Session):
                # Only now is the client heard: whatever it sends is answered after `session`.
                await self.dialect.start(self._input_link)
                tg.start_soon(self._read_loop)

    # -- client -> server ------------------------------------------------------------

    async def _read_loop(self) -> None:
        tap = self.websocket.scope.get("extensions", {}).get(TAP)
        if tap is None:
            await self._read(self._input_link)
            return
        self._set_tap = tap["set"]
        self._set_tap(self._frame_nowait)
        try:
            await self._read(self._input_link)
        finally:
            self._set_tap(None)
            self._set_tap = None

    def _frame_nowait(self, frame: bytes) -> bool:
        """A client's binary frame, in the socket's callback (see :data:`TAP`): True if
        taken."""
        if self.closing or len(frame) > self.max_frame_bytes:
            return False  # the reader decides, in order
        return self.dialect.on_frame_nowait(frame, self._input_link)

    def audio_as_is(self) -> None:
        """The dialect hears every binary frame as is from now on: the tap takes them
        straight to the pipeline's inbox (:meth:`_pcm_nowait`)."""
        if self._set_tap is not None:
            self._set_tap(self._pcm_nowait)

    def _pcm_nowait(self, pcm: bytes) -> bool:
        """:meth:`_frame_nowait` for a dialect that hears audio as is: the frame size
        check, then :meth:`audio_nowait`, with no call through the dialect. (Inlining
        :meth:`audio_nowait` here saves about 0.6k of a frame's 38k instructions; one
        copy of the budget's checks is worth more.)"""
        if len(pcm) > self.max_frame_bytes:
            return False  # the reader closes with 1009, in order
        return self.audio_nowait(pcm)

    async def _read(self, link: _Link) -> None:
        while True:
            message = await self.websocket.receive()
            if message["type"] == "websocket.disconnect":
                self.gone = True  # nothing can be sent any more
                self.end()
                return
            if self.closing or (self.shutting_down and self.input_ended):
                # The close is on its way, or the drain ended the input (a live
                # microphone goes on sending): only the client's leaving matters now.
                continue
            data: bytes | None = message.get("bytes")
            raw: str | None = message.get("text")
            size = len(data) if data is not None else len((raw or "").encode())
            if size > self.max_frame_bytes:
                limit = self.max_frame_bytes
                await self._queue(
                    _Close(1009, f"frame of {size} bytes is over the {limit}-byte limit"),
                    _Gate.FINAL,
                )
                continue
            frame = data if data is not None else raw
            if frame is not None:
                await self.dialect.on_frame(frame, link)

    async def audio(self, pcm: bytes) -> None:
        if self.input_ended or self.closing or not pcm:
            return
        if await self.spend_audio(len(pcm)):
            await self._audio.put(pcm)  # waits (so stops reading) only when the pipeline is behind

    async def spend_audio(self, size: int) -> bool:
        self.audio_bytes += size
        if self.max_audio_bytes is not None and self.audio_bytes > self.max_audio_bytes:
            await self.fail(f"the session used up its audio budget of {self.max_audio_bytes} bytes")
            return False
        return True

    def audio_nowait(self, pcm: bytes) -> bool:
        if self.input_ended or self.closing or not pcm:
            return False
        size = self.audio_bytes + len(pcm)
        if self.max_audio_bytes is not None and size > self.max_audio_bytes:
            return False  # audio() ends the session
        if not self._audio.put_nowait(pcm):
            return False  # full: audio() waits
        self.audio_bytes = size
        return True

    async def text(self, content: str) -> None:
        if not self.input_ended and not self.closing:
            await self._text.put(content)

    def end_input(self) -> None:
        self.input_ended = True
        self._audio.close()
        self._text.close()


class _Link:
    """A dialect's view of its connection; ``gate`` says until when its frames may go out."""

    audio_nowait: Callable[[bytes], bool]  # the connection's own: one call less per frame

    def __init__(self, connection: _Connection, gate: _Gate) -> None:
        self._c = connection
        self._gate = gate
        self.audio_nowait = connection.audio_nowait

    @property
    def query(self) -> Mapping[str, str]:
        return self._c.websocket.query_params

    @property
    def headers(self) -> Mapping[str, str]:
        return self._c.websocket.headers

    @property
    def pipeline(self) -> Pipeline:
        return self._c.pipeline

    @property
    def input_ended(self) -> bool:
        return self._c.input_ended

    async def audio(self, pcm: bytes) -> None:
        await self._c.audio(pcm)

    async def spend_audio(self, size: int) -> bool:
        return await self._c.spend_audio(size)

    def audio_as_is(self) -> None:
        self._c.audio_as_is()

    async def text(self, content: str) -> None:
        await self._c.text(content)

    async def end_input(self) -> None:
        self._c.end_input()

    async def send(self, frame: str | bytes) -> None:
        await self._c._queue(frame, self._gate)

    async def error(self, message: str, *, stage: Stage = "input") -> None:
        if self._gate is _Gate.INPUT and (self._c.finishing or self._c.closing):
            return  # no error about input may follow `finish`
        await self._c.dialect.on_event(ErrorEvent(stage=stage, message=message), self)

    async def fail(self, message: str, *, stage: Stage = "input") -> None:
        await self._c.fail(message, stage)

    def start_soon(self, func: Callable[..., Coroutine[Any, Any, Any]], *args: Any) -> None:
        assert self._c._tg is not None, "start_soon is for a running session"
        self._c._tg.start_soon(func, *args)
