"""Serve one voice session over a Starlette/FastAPI WebSocket.

::

    @app.websocket("/listen")
    async def listen(websocket: WebSocket) -> None:
        await serve(websocket, Pipeline(stt=stt, llm=llm, tts=tts, realtime_lead=0.2))

The wire protocol (``docs/server.md`` has the whole of it):

* client → server: **binary frames** of PCM16 audio, in the session's
  ``input_format`` unless the client declared its own (query parameters
  ``?sample_rate=48000&channels=1``, or ``{"type": "start", ...}`` before its
  first audio), which is then converted; **text frames** of JSON control:
  ``{"type": "stop"}`` ends the input (the turn in progress is answered, then
  the session finishes), ``{"type": "text", "content": ...}`` is a typed turn
  on a session opened with ``?mode=text``.
* server → client: one **JSON text frame** per event (``session`` first,
  ``finish`` last), reply audio as **binary frames** of PCM16 in the
  session's ``output_format``.
* A bad control message or bad audio gets an ``error`` event and the session
  goes on. The server closes with 1000 after ``finish`` (its reason is the
  close reason), 1009 for a frame over ``max_frame_bytes``, 1008 for a bad
  declared format or a spent budget (``max_seconds``, ``max_audio_bytes``),
  1011 if the server itself fails.

How it runs: two tasks in one task group. :meth:`_Connection.receive_loop`
reads frames and feeds the pipeline's input stream; :meth:`_Connection.send_loop`
writes the pipeline's events out. Whatever ends the session (``finish``, the
client leaving, a budget) cancels the group, and leaving it closes the
pipeline and with it every provider stream. Nothing a client sends can raise
out of :func:`serve`, so one session's failure never reaches another.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping
from typing import TypeVar

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from voicepipe.audio import AudioFormat, Resampler
from voicepipe.errors import AudioFormatError, ProtocolError, Stage
from voicepipe.events import (
    ErrorEvent,
    Event,
    Finish,
    StartControl,
    StopControl,
    TextControl,
    parse_control,
    to_wire,
)
from voicepipe.pipeline import Pipeline

__all__ = ["DEFAULT_MAX_FRAME_BYTES", "serve"]

log = logging.getLogger("voicepipe.transports.websocket")

T = TypeVar("T")

DEFAULT_MAX_FRAME_BYTES = 1 << 20
"""Largest frame a client may send (1 MiB); a bigger one closes the socket with 1009."""

_GONE = (WebSocketDisconnect, RuntimeError, OSError)
"""What sending raises once the client is gone (WebSocketDisconnected is a RuntimeError)."""


async def serve(
    websocket: WebSocket,
    pipeline: Pipeline,
    *,
    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
    max_seconds: float | None = None,
    max_audio_bytes: int | None = None,
    input_buffer: int = 50,
) -> None:
    """Run ``pipeline`` as one session over ``websocket`` (accepted here if it is not yet).

    Returns when the session is over and the socket closed. ``max_seconds``
    and ``max_audio_bytes`` (as received, before any conversion) end the
    session with an ``error`` event and close 1008. ``input_buffer`` is how
    many input frames may wait for the pipeline before reading the socket pauses.
    """
    if websocket.application_state is WebSocketState.CONNECTING:
        await websocket.accept()
    connection = _Connection(websocket, pipeline, max_frame_bytes, max_audio_bytes)
    try:
        connection.declare(_query_format(websocket.query_params, pipeline.input_format))
    except AudioFormatError as exc:
        await connection.fail(str(exc), stage="input")
        return
    try:
        with anyio.move_on_after(max_seconds) as deadline:
            await connection.run(input_buffer)
        if deadline.cancelled_caught:
            await connection.fail(f"the session reached its {max_seconds:g}-second limit")
    except Exception:
        log.exception("session %s failed", pipeline.session_id)
        await connection.close(1011, "internal error")


class _Connection:
    """One session's socket state, shared by the receive and send loops."""

    def __init__(
        self,
        websocket: WebSocket,
        pipeline: Pipeline,
        max_frame_bytes: int,
        max_audio_bytes: int | None,
    ) -> None:
        self.websocket = websocket
        self.pipeline = pipeline
        self.max_frame_bytes = max_frame_bytes
        self.max_audio_bytes = max_audio_bytes
        self.text_mode = websocket.query_params.get("mode") == "text"
        self.client_format = pipeline.input_format
        self.resampler: Resampler | None = None
        self.audio_bytes = 0
        self.input_ended = False
        self.closed = False
        self.finish_reason = "end_of_input"
        self.lock = anyio.Lock()  # one frame at a time: both loops send
        self.scope = anyio.CancelScope()

    def declare(self, fmt: AudioFormat) -> None:
        """Take the client's audio in ``fmt`` and convert it to the pipeline's format."""
        target = self.pipeline.input_format
        self.resampler = Resampler(fmt, target) if fmt != target else None
        self.client_format = fmt

    async def run(self, input_buffer: int) -> None:
        audio_send, audio = anyio.create_memory_object_stream[bytes](input_buffer)
        text_send, text = anyio.create_memory_object_stream[str](input_buffer)
        with audio_send, text_send, audio, text, self.scope:
            async with anyio.create_task_group() as tg:
                session = (
                    self.pipeline.run_text(text) if self.text_mode else self.pipeline.run(audio)
                )
                async with session as events:
                    tg.start_soon(self.receive_loop, audio_send, text_send)
                    await self.send_loop(events)
                tg.cancel_scope.cancel()  # the receive loop waits for a frame that may never come
        await self.close(1000, self.finish_reason)

    # -- server -> client ------------------------------------------------------

    async def send_loop(self, events: MemoryObjectReceiveStream[Event]) -> None:
        async for event in events:
            if isinstance(event, Finish):
                self.finish_reason = event.reason
            await self.send(to_wire(event))

    async def send(self, frame: str | bytes) -> None:
        """Send one frame; if the client is gone, end the session."""
        async with self.lock:
            if self.closed:
                return
            try:
                if isinstance(frame, bytes):
                    await self.websocket.send_bytes(frame)
                else:
                    await self.websocket.send_text(frame)
            except _GONE:
                self.closed = True
                self.scope.cancel()

    async def error(self, message: str) -> None:
        await self.send(to_wire(ErrorEvent(stage="input", message=message)))

    async def close(self, code: int, reason: str) -> None:
        async with self.lock:
            if self.closed:
                return
            self.closed = True
            with contextlib.suppress(*_GONE):
                await self.websocket.close(code, reason.encode()[:123].decode(errors="ignore"))
        self.scope.cancel()

    async def fail(self, message: str, *, stage: Stage = "transport") -> None:
        """End the session: a non-recoverable ``error`` event, then close 1008."""
        event = ErrorEvent(stage=stage, message=message, recoverable=False)
        await self.send(to_wire(event))
        await self.close(1008, message)

    # -- client -> server ------------------------------------------------------

    async def receive_loop(
        self, audio: MemoryObjectSendStream[bytes], text: MemoryObjectSendStream[str]
    ) -> None:
        while True:
            message = await self.websocket.receive()
            if message["type"] == "websocket.disconnect":
                self.closed = True  # nothing can be sent any more
                self.scope.cancel()
                return
            data: bytes | None = message.get("bytes")
            raw: str | None = message.get("text")
            size = len(data) if data is not None else len((raw or "").encode())
            if size > self.max_frame_bytes:
                await self.close(
                    1009, f"frame of {size} bytes is over the {self.max_frame_bytes}-byte limit"
                )
                return
            if data is not None:
                await self.on_audio(data, audio)
            elif raw is not None:
                await self.on_control(raw, audio, text)

    async def on_audio(self, data: bytes, audio: MemoryObjectSendStream[bytes]) -> None:
        if self.text_mode:
            await self.error('this session takes typed turns ({"type": "text"}), not audio')
            return
        if self.input_ended:
            await self.error("audio after stop is ignored")
            return
        try:
            chunk = self.client_format.check_chunk(data)
        except AudioFormatError as exc:
            await self.error(str(exc))
            return
        self.audio_bytes += len(chunk)
        if self.max_audio_bytes is not None and self.audio_bytes > self.max_audio_bytes:
            await self.fail(f"the session used up its audio budget of {self.max_audio_bytes} bytes")
            return
        if self.resampler is not None:
            chunk = self.resampler.process(chunk)
        await _put(audio, chunk)

    async def on_control(
        self,
        raw: str,
        audio: MemoryObjectSendStream[bytes],
        text: MemoryObjectSendStream[str],
    ) -> None:
        try:
            control = parse_control(raw)
        except ProtocolError as exc:
            await self.error(str(exc))
            return
        if isinstance(control, StartControl):
            if self.audio_bytes or self.input_ended:
                await self.error("start must come before the first audio frame")
                return
            try:
                self.declare(AudioFormat(control.sample_rate, control.channels))
            except AudioFormatError as exc:
                await self.error(str(exc))
        elif isinstance(control, StopControl):
            if not self.input_ended:
                self.input_ended = True
                if self.resampler is not None:
                    await _put(audio, self.resampler.flush())
                audio.close()  # the pipeline answers the turn in progress, then finishes
                text.close()
        elif isinstance(control, TextControl):
            if not self.text_mode:
                await self.error("typed turns need a session opened with ?mode=text")
            elif self.input_ended:
                await self.error("text after stop is ignored")
            else:
                await _put(text, control.content)


async def _put(stream: MemoryObjectSendStream[T], item: T) -> None:
    """Hand input to the pipeline; drop it once the pipeline stopped listening (session ending)."""
    if not item:
        return
    with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
        try:
            stream.send_nowait(item)  # the common case: no trip through the event loop
        except anyio.WouldBlock:
            await stream.send(item)  # the pipeline is behind: wait (and stop reading)


def _query_format(query: Mapping[str, str], default: AudioFormat) -> AudioFormat:
    """The input format declared by ``?sample_rate=&channels=``, or ``default``."""
    if "sample_rate" not in query and "channels" not in query:
        return default
    try:
        rate = int(query.get("sample_rate", default.sample_rate))
        channels = int(query.get("channels", default.channels))
    except ValueError as exc:
        raise AudioFormatError(f"sample_rate and channels must be integers: {exc}") from exc
    return AudioFormat(rate, channels)
