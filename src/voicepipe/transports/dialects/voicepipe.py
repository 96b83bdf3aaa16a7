"""voicepipe's own wire protocol (``docs/server.md`` has the whole of it).

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

from voicepipe.audio import AudioFormat, Resampler
from voicepipe.errors import AudioFormatError, ProtocolError
from voicepipe.events import StartControl, StopControl, TextControl, parse_control
from voicepipe.transports.dialect import Dialect, Link

__all__ = ["VoicepipeDialect"]


class VoicepipeDialect(Dialect):
    """PCM16 binary frames and JSON control in; JSON events and PCM16 binary frames out."""

    subprotocols = ("voicepipe",)

    def __init__(self) -> None:
        self.client_format: AudioFormat | None = None
        self.resampler: Resampler | None = None
        self.audio_seen = False

    async def open(self, link: Link) -> None:
        self.text_mode = link.query.get("mode") == "text"
        self.client_format = link.pipeline.input_format

    async def start(self, link: Link) -> None:
        query = link.query
        if "sample_rate" not in query and "channels" not in query:
            return
        default = link.pipeline.input_format
        try:
            rate = int(query.get("sample_rate", default.sample_rate))
            channels = int(query.get("channels", default.channels))
        except ValueError as exc:
            await link.fail(f"sample_rate and channels must be integers: {exc}")
            return
        await self._declare(rate, channels, link)

    async def _declare(self, rate: int, channels: int, link: Link) -> None:
        """Take audio at ``rate``/``channels``; a format we cannot use ends the session."""
        target = link.pipeline.input_format
        try:
            fmt = AudioFormat(rate, channels)
            self.resampler = Resampler(fmt, target) if fmt != target else None
        except AudioFormatError as exc:
            await link.fail(str(exc))
            return
        self.client_format = fmt

    async def on_frame(self, frame: str | bytes, link: Link) -> None:
        if isinstance(frame, bytes):
            await self._on_audio(frame, link)
        else:
            await self._on_control(frame, link)

    async def _on_audio(self, data: bytes, link: Link) -> None:
        if self.text_mode:
            await link.error('this session takes typed turns ({"type": "text"}), not audio')
            return
        if link.input_ended:
            await link.error("audio after stop is ignored")
            return
        fmt = self.client_format or link.pipeline.input_format
        try:
            chunk = fmt.check_chunk(data)
        except AudioFormatError as exc:
            await link.error(str(exc))
            return
        self.audio_seen = True
        if self.resampler is not None:
            chunk = self.resampler.process(chunk)
        await link.audio(chunk)

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
            if self.audio_seen or link.input_ended:
                await link.error("start must come before the first audio frame")
                return
            await self._declare(control.sample_rate, control.channels, link)
        elif isinstance(control, StopControl):
            if not link.input_ended:
                if self.resampler is not None:
                    await link.audio(self.resampler.flush())
                await link.end_input()  # the pipeline answers the turn in progress, then finishes
        elif isinstance(control, TextControl):
            if not self.text_mode:
                await link.error("typed turns need a session opened with ?mode=text")
            elif link.input_ended:
                await link.error("text after stop is ignored")
            else:
                await link.text(control.content)


def _is_start(raw: str) -> bool:
    """Whether a message that failed to parse as a control was a ``start`` (error path only)."""
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        return False
    return isinstance(data, Mapping) and data.get("type") == "start"
