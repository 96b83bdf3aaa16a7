"""Push-to-talk clips: each message is one whole recorded answer (the forms client's protocol).

The client (a page that records one answer per click with ``MediaRecorder``)
sends each clip as one JSON text frame::

    {"audio": "data:audio/webm;base64,GkXfo59ChoEBQveBAULygQRC84EIQoKEd2VibUKHgQRChYECGFOAZwH/..."}

and reads every frame it gets as text: the greeting (the opening line and
first question) as a **plain text** frame, then each reply as
``{"message": "..."}`` and the last one, once the form is complete, as
``{"message": "...", "answers": {...}}``. It speaks them itself, so nothing
else is sent: no binary frame, no other event.

A clip is a whole user turn (no end-of-turn detection): it is decoded
(WebM/Ogg/MP4/MP3, off the event loop), transcribed by the pipeline's STT on
a stream of its own, and answered as a typed turn, so the session runs in
text mode and needs no TTS.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from typing import Any

import anyio

from voicepipe.audio import AudioFormat
from voicepipe.codecs import CodecError
from voicepipe.errors import ProtocolError
from voicepipe.events import (
    AssistantReply,
    ErrorEvent,
    Event,
    FormComplete,
    TranscriptFinal,
    UserTurn,
)
from voicepipe.providers.base import STT
from voicepipe.transports.dialect import Dialect, Link, parse_json

__all__ = ["ClipsDialect", "transcribe_clip"]

log = logging.getLogger("voicepipe.transports.clips")

CHUNK_MS = 100
"""A clip goes to the STT in chunks this long, as a live stream would."""


class ClipsDialect(Dialect):
    """One clip per turn in, plain-text greeting and ``{"message": ...}`` replies out."""

    text_mode = True

    def __init__(self) -> None:
        self._greeted = False
        self._answers: dict[str, Any] | None = None

    async def on_frame(self, frame: str | bytes, link: Link) -> None:
        if isinstance(frame, bytes):
            await link.error(
                'send each clip as a text frame {"audio": "data:audio/webm;base64,..."}'
            )
            return
        try:
            clip = _clip(parse_json(frame))
        except ProtocolError as exc:
            await link.error(str(exc))
            return
        if link.input_ended:
            return
        stt = link.pipeline.stt
        if stt is None:
            await link.fail("this server has no STT, so it cannot take spoken answers")
            return
        fmt = link.pipeline.input_format
        try:
            pcm = await _decode(clip, fmt)
        except CodecError as exc:
            await link.error(str(exc))
            return
        if not await link.spend_audio(len(pcm)):
            return  # over the session's audio budget: the session is ending
        text = await _transcribe(stt, pcm, fmt)
        if text.strip():
            await link.text(text)
        else:
            await link.error("no words were heard in that clip; please record the answer again")

    async def on_event(self, event: Event, link: Link) -> None:
        if isinstance(event, FormComplete):
            self._answers = dict(event.answers)
        elif isinstance(event, AssistantReply) and event.content:
            if not self._greeted:
                self._greeted = True
                await link.send(event.content)  # the client speaks a plain-text greeting
                return
            message: dict[str, Any] = {"message": event.content}
            if self._answers is not None:
                message["answers"] = self._answers
            await link.send(json.dumps(message, ensure_ascii=False))
        elif isinstance(event, ErrorEvent):
            log.info("clip session: %s error: %s", event.stage, event.message)


def _clip(message: object) -> bytes:
    """The clip's bytes from ``{"audio": "data:<type>;base64,<data>"}``."""
    audio = message.get("audio") if isinstance(message, dict) else None
    if not isinstance(audio, str):
        raise ProtocolError('expected {"audio": "data:audio/webm;base64,..."}')
    header, sep, data = audio.partition(",")
    if not sep or not header.startswith("data:") or not header.endswith(";base64"):
        raise ProtocolError('"audio" must be a base64 data URL: "data:audio/webm;base64,..."')
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ProtocolError(f"the clip is not valid base64: {exc}") from exc


async def transcribe_clip(stt: STT, clip: bytes, fmt: AudioFormat) -> str:
    """The words of one whole recorded clip: decoded off the event loop, then one STT stream.

    Raises :class:`~voicepipe.codecs.CodecError` when the clip is not audio.
    """
    return await _transcribe(stt, await _decode(clip, fmt), fmt)


async def _decode(clip: bytes, fmt: AudioFormat) -> bytes:
    """The clip as PCM16 at ``fmt``'s rate, decoded in a worker thread."""
    from voicepipe.codecs.container import decode_clip

    return await anyio.to_thread.run_sync(decode_clip, clip, fmt.sample_rate)


async def _transcribe(stt: STT, pcm: bytes, fmt: AudioFormat) -> str:
    """The words of ``pcm``, one whole clip, through one STT stream."""
    size = fmt.bytes_for(CHUNK_MS)

    async def chunks() -> Any:
        for start in range(0, len(pcm), size):
            yield pcm[start : start + size]

    turns: list[str] = []
    finals: list[str] = []

    async def emit(event: Any) -> None:
        if isinstance(event, UserTurn):
            turns.append(event.content)
        elif isinstance(event, TranscriptFinal):
            finals.append(event.content)

    await stt.transcribe(chunks(), AudioFormat(fmt.sample_rate), emit)
    return " ".join(t.strip() for t in (turns or finals) if t.strip())
