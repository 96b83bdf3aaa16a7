"""voicepipe's own wire protocol (``docs/server.md`` has the whole of it).

* client → server: **binary frames** of PCM16 audio, in the session's
  ``input_format`` unless the client declared its own (query parameters
  ``?sample_rate=48000&channels=1``, or ``{"type": "start", ...}`` before its
  first audio), which is then converted; **text frames** of JSON control:
  ``{"type": "stop"}`` ends the input (the turn in progress is answered, then
  the session finishes), ``{"type": "end_turn"}`` ends the user's turn now
  (push-to-talk), ``{"type": "text", "content": ...}`` is a typed turn on a
  session opened with ``?mode=text``.
* **Codecs** (``?input=&output=`` or the same keys in ``start``): the client's
  audio may be ``webm``, ``ogg``, ``mp4``, ``mp3``, ``mulaw``, ``alaw`` or
  ``pcm16``; undeclared, a container is recognised by its first bytes (what
  ``MediaRecorder`` sends) and anything else is PCM16. Reply audio is PCM16
  unless ``output=mp3|opus|ogg|mulaw|alaw`` asks for a codec (never guessed).
* server → client: one **JSON text frame** per event (``session`` first,
  ``finish`` last), reply audio as **binary frames** of PCM16 in the
  session's ``output_format``, or in the requested codec.
* Bad input (a frame that is not JSON or not a known message, however deeply
  nested; audio of the wrong shape; a late ``start``) gets an ``input`` error
  event and the session goes on. A declared format the server cannot use
  ends the session (an ``input`` error, then close 1008), whether it came in
  the query string or in a ``start`` message: the audio that follows it could
  not be understood.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from voicepipe.audio import AudioFormat
from voicepipe.codecs import CodecError
from voicepipe.errors import AudioFormatError, ProtocolError
from voicepipe.events import (
    AssistantReply,
    AudioChunk,
    EndTurnControl,
    Event,
    Interrupted,
    StartControl,
    StopControl,
    TextControl,
    parse_control,
    to_wire,
)
from voicepipe.transports.codec_io import ClientAudio, ReplyAudio
from voicepipe.transports.dialect import Dialect, Link

__all__ = ["END_TURN_SILENCE_MS", "VoicepipeDialect"]

END_TURN_SILENCE_MS = 2000
"""Silence handed to the STT on ``end_turn``: every endpointing STT ends the turn on it,
and it is processed at once, not in real time."""


class VoicepipeDialect(Dialect):
    """Audio (PCM16 or a codec) and JSON control in; JSON events and audio out."""

    subprotocols = ("voicepipe",)

    def __init__(self) -> None:
        self.audio_in: ClientAudio | None = None
        self.audio_out: ReplyAudio | None = None
        self.broken = False  # the client's stream could not be decoded: its audio is ignored

    async def open(self, link: Link) -> None:
        self.text_mode = link.query.get("mode") == "text"

    async def start(self, link: Link) -> None:
        query = link.query
        target = link.pipeline.input_format
        fmt = target
        if "sample_rate" in query or "channels" in query:
            try:
                rate = int(query.get("sample_rate", target.sample_rate))
                channels = int(query.get("channels", target.channels))
            except ValueError as exc:
                await link.fail(f"sample_rate and channels must be integers: {exc}")
                return
            try:
                fmt = AudioFormat(rate, channels)
            except AudioFormatError as exc:
                await link.fail(str(exc))
                return
        try:
            self.audio_in = ClientAudio(query.get("input") or "auto", target, fmt)
            self._output(query.get("output"), link)
        except (CodecError, AudioFormatError) as exc:
            await link.fail(str(exc))

    def _output(self, name: str | None, link: Link) -> None:
        source = link.pipeline.output_format
        if name is None:
            if self.audio_out is None and source is not None:
                self.audio_out = ReplyAudio("pcm16", source)
            return
        if source is None:
            raise CodecError("this session speaks no audio, so it has no output codec")
        self.audio_out = ReplyAudio(name, source)

    async def on_frame(self, frame: str | bytes, link: Link) -> None:
        if isinstance(frame, bytes):
            await self._on_audio(frame, link)
        else:
            await self._on_control(frame, link)

    def on_frame_nowait(self, frame: str | bytes, link: Link) -> bool:
        audio_in = self.audio_in
        if type(frame) is bytes and audio_in is not None and audio_in.passthrough:
            if self.text_mode:
                return False
            link.audio_as_is()  # PCM16 as is from now on: the server takes it without us
            return link.audio_nowait(frame)
        return False

    async def on_event(self, event: Event, link: Link) -> None:
        out = self.audio_out
        if isinstance(event, AudioChunk) and out is not None and out.codec != "pcm16":
            data = await out.chunk(event.audio)
            if data:
                await link.send(data)
            return
        if out is not None and out.codec != "pcm16":
            if isinstance(event, AssistantReply) and not event.interrupted:
                tail = await out.end_reply()  # the reply's last words, never stuck
                if tail:
                    await link.send(tail)
            elif isinstance(event, Interrupted):
                out.drop()  # the client drops what it has; so does the encoder
        await link.send(to_wire(event))

    async def aclose(self) -> None:
        if self.audio_in is not None:
            self.audio_in.close()

    async def _on_audio(self, data: bytes, link: Link) -> None:
        audio_in = self.audio_in
        if audio_in is not None and audio_in.passthrough and not self.text_mode:
            if link.input_ended:
                await link.error("audio after stop is ignored")
            else:
                await link.audio(data)  # the common case: PCM16 in the pipeline's format
            return
        if self.text_mode:
            await link.error('this session takes typed turns ({"type": "text"}), not audio')
            return
        if link.input_ended:
            await link.error("audio after stop is ignored")
            return
        if self.broken or self.audio_in is None:
            return
        try:
            pcm = await self.audio_in.feed(data)
        except CodecError as exc:
            self.broken = True  # a container stream cannot resynchronise
            await link.fail(str(exc))
            return
        except AudioFormatError as exc:
            await link.error(str(exc))
            return
        await link.audio(pcm)

    async def _on_control(self, raw: str, link: Link) -> None:
        try:
            control = parse_control(raw)
        except ProtocolError as exc:
            if _is_start(raw):  # a declared format, just unusable: as in the query string
                await link.fail(str(exc))
            else:
                await link.error(str(exc))
            return
        if isinstance(control, StartControl):
            if self.audio_in is None or self.audio_in.started or link.input_ended:
                await link.error("start must come before the first audio frame")
                return
            try:
                fmt = AudioFormat(control.sample_rate, control.channels)
                self.audio_in.declare(control.input, fmt)
                if control.output is not None:
                    self._output(control.output, link)
            except (CodecError, AudioFormatError) as exc:
                await link.fail(str(exc))
        elif isinstance(control, StopControl):
            if not link.input_ended:
                await self._flush_input(link)
                await link.end_input()  # the pipeline answers the turn in progress, then finishes
        elif isinstance(control, EndTurnControl):
            if self.text_mode or link.input_ended:
                await link.error("end_turn is for audio sessions, before stop")
                return
            fmt = link.pipeline.input_format
            await link.audio(bytes(fmt.bytes_for(END_TURN_SILENCE_MS)))
        elif isinstance(control, TextControl):
            if not self.text_mode:
                await link.error("typed turns need a session opened with ?mode=text")
            elif link.input_ended:
                await link.error("text after stop is ignored")
            else:
                await link.text(control.content)

    async def _flush_input(self, link: Link) -> None:
        if self.audio_in is None or self.broken:
            return
        try:
            await link.audio(await self.audio_in.end())
        except CodecError as exc:
            await link.error(str(exc))


def _is_start(raw: str) -> bool:
    """Whether a message that failed to parse as a control was a ``start`` (error path only)."""
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        return False
    return isinstance(data, Mapping) and data.get("type") == "start"
