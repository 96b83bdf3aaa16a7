"""Twilio Media Streams (bidirectional): a phone call as a voice session.

Twilio opens the WebSocket named in the TwiML ``<Connect><Stream url=...>``
(``docs/telephony.md``) and speaks JSON text frames:

* in: ``connected``, ``start`` (the ``streamSid``, ``customParameters`` and
  ``mediaFormat``: μ-law 8 kHz mono), ``media`` (base64 μ-law, 20 ms each),
  ``dtmf`` (one key), ``mark`` (a label we sent, echoed once the audio before
  it has played), ``stop`` (the call ended);
* out: ``media`` (base64 μ-law), ``mark`` after each sentence, ``clear``
  (drop the audio not yet played: barge-in).

Reply audio goes to Twilio as fast as it comes; Twilio plays it in order.
The session learns what the caller actually heard from the marks: a
sentence counts as heard once its mark comes back, and after a ``clear`` the
marks Twilio returns belong to cleared audio and do not count. The dialect is
the pipeline's ``playback`` (see :class:`voicepipe.pipeline.Playback`), so a
reply lasts until Twilio has played it, barge-in during it sends ``clear``,
and the history keeps only the sentences whose marks came back.

DTMF keys are collected until ``#`` (or ``digit_timeout`` seconds without a
key) and handed to the policy as a typed user turn: a form's number field
can be filled from the keypad.

:func:`signature_valid` checks the ``X-Twilio-Signature`` header of the
upgrade request (HMAC-SHA1 of the URL with the account's auth token).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import anyio

from voicepipe.audio import AudioFormat
from voicepipe.codecs import decode
from voicepipe.codecs.g711 import G711Decoder, G711Encoder
from voicepipe.errors import ProtocolError
from voicepipe.events import AssistantDelta, AssistantReply, AudioChunk, Event, Interrupted
from voicepipe.transports.dialect import Dialect, Link, parse_json

__all__ = ["TwilioDialect", "signature_valid"]

log = logging.getLogger("voicepipe.transports.twilio")

MULAW = {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}


@dataclass(slots=True)
class _Sentence:
    text: str
    start: int  # offset of its first audio byte (pipeline PCM, whole session)
    end: int | None = None  # set when its mark is sent
    mark: str | None = None
    heard: bool = False


class TwilioDialect(Dialect):
    """One Twilio Media Streams call. ``parameters`` holds the ``<Parameter>``s of the TwiML."""

    def __init__(self, *, digits_end: str = "#", digit_timeout: float = 3.0) -> None:
        self.digits_end = digits_end
        self.digit_timeout = digit_timeout
        self.stream_sid: str | None = None
        self.call_sid: str | None = None
        self.parameters: dict[str, str] = {}
        self._started = anyio.Event()
        self._link: Link | None = None
        self._decoder: G711Decoder | None = None
        self._encoder: G711Encoder | None = None
        self._digits = ""
        self._digit_scope: anyio.CancelScope | None = None
        # playback bookkeeping, in bytes of the pipeline's reply PCM over the session
        self._sent = 0  # handed to Twilio
        self._played = 0  # confirmed played by a mark, or dropped by a clear
        self._marks: dict[str, int] = {}  # sent, not yet returned: name -> end offset
        self._marks_sent = 0
        self._cleared: set[str] = set()
        self._sentences: list[_Sentence] = []  # of the reply going out
        self._changed = anyio.Event()
        self._sent_all = False  # the call ended: played() waits for nothing

    # -- session ---------------------------------------------------------------

    async def open(self, link: Link) -> None:
        self._link = link
        self._decoder = G711Decoder("mulaw", link.pipeline.input_format.sample_rate)
        link.pipeline.playback = self

    async def aclose(self) -> None:
        self._hung_up()
        if self._digit_scope is not None:
            self._digit_scope.cancel()

    # -- Twilio -> us ------------------------------------------------------------

    async def on_frame(self, frame: str | bytes, link: Link) -> None:
        if isinstance(frame, bytes):
            await link.error("Twilio Media Streams sends JSON text frames, not binary ones")
            return
        try:
            message = parse_json(frame)
            if not isinstance(message, dict) or not isinstance(message.get("event"), str):
                raise ProtocolError('a Media Streams message is a JSON object with an "event"')
            await self._on_message(message, link)
        except ProtocolError as exc:
            await link.error(str(exc))

    async def _on_message(self, message: dict[str, Any], link: Link) -> None:
        kind = message["event"]
        if kind == "media":
            media = _field(message, "media")
            if media.get("track", "inbound") != "inbound":
                return
            payload = _b64(media.get("payload"))
            if self._decoder is not None and not link.input_ended:
                await link.audio(await decode(self._decoder, payload))  # big: in a thread
        elif kind == "mark":
            name = _field(message, "mark").get("name")
            if isinstance(name, str):
                self._on_mark(name)
        elif kind == "dtmf":
            digit = _field(message, "dtmf").get("digit")
            if isinstance(digit, str) and len(digit) == 1:
                await self._on_digit(digit, link)
        elif kind == "start":
            await self._on_start(_field(message, "start"), message, link)
        elif kind == "stop":
            self._hung_up()
            await self._submit_digits(link)
            if self._decoder is not None:
                await link.audio(self._decoder.flush())
            await link.end_input()
        elif kind != "connected":
            raise ProtocolError(f"unknown Media Streams event {kind!r}")

    async def _on_start(self, start: dict[str, Any], message: dict[str, Any], link: Link) -> None:
        media_format = start.get("mediaFormat", MULAW)
        if isinstance(media_format, dict) and any(
            media_format.get(k, v) != v for k, v in MULAW.items()
        ):
            await link.fail(f"expected mediaFormat {MULAW}, got {media_format}")
            return
        sid = start.get("streamSid", message.get("streamSid"))
        if not isinstance(sid, str) or not sid:
            raise ProtocolError("start has no streamSid")
        self.stream_sid = sid
        call = start.get("callSid")
        self.call_sid = call if isinstance(call, str) else None
        params = start.get("customParameters") or {}
        if isinstance(params, dict):
            self.parameters = {str(k): str(v) for k, v in params.items()}
        self._started.set()

    def _on_mark(self, name: str) -> None:
        if name in self._cleared:
            self._cleared.discard(name)  # audio dropped by our clear: never played
            return
        end = self._marks.pop(name, None)
        if end is None:
            return
        self._played = max(self._played, end)
        for sentence in self._sentences:
            if sentence.end is not None and sentence.end <= end:
                sentence.heard = True
        self._notify()

    async def _on_digit(self, digit: str, link: Link) -> None:
        if digit == self.digits_end:
            await self._submit_digits(link)
            return
        self._digits += digit
        if self._digit_scope is not None:
            self._digit_scope.cancel()
        link.start_soon(self._digit_timer, link)

    async def _digit_timer(self, link: Link) -> None:
        with anyio.CancelScope() as scope:
            self._digit_scope = scope
            await anyio.sleep(self.digit_timeout)
            self._digit_scope = None
            await self._submit_digits(link)

    async def _submit_digits(self, link: Link) -> None:
        if self._digit_scope is not None:
            self._digit_scope.cancel()
            self._digit_scope = None
        digits, self._digits = self._digits, ""
        if digits and not link.input_ended:
            await link.pipeline.inject_turn(digits)

    # -- us -> Twilio ------------------------------------------------------------

    async def on_event(self, event: Event, link: Link) -> None:
        if isinstance(event, AudioChunk):
            await self._send_audio(event.audio, event.format, link)
        elif isinstance(event, AssistantDelta):
            await self._end_sentence(link)
            self._sentences.append(_Sentence(event.content, self._sent))
        elif isinstance(event, AssistantReply):
            await self._end_sentence(link)
            self._sentences = []
        elif isinstance(event, Interrupted):
            await self._clear(link)

    async def _send_audio(self, pcm: bytes, fmt: AudioFormat, link: Link) -> None:
        if self._encoder is None or self._encoder.source != fmt:
            self._encoder = G711Encoder("mulaw", fmt)
        await self._send_media(self._encoder.encode(pcm), link)
        self._sent += len(pcm)
        self._notify()

    async def _send_media(self, ulaw: bytes, link: Link) -> None:
        if not ulaw:
            return
        await self._started.wait()
        payload = base64.b64encode(ulaw).decode()
        await link.send(
            _json({"event": "media", "streamSid": self.stream_sid, "media": {"payload": payload}})
        )

    async def _end_sentence(self, link: Link) -> None:
        """Mark the end of the sentence going out, if it had audio not yet marked.

        The encoder's resampler is flushed first, so the mark follows all of the
        sentence's audio (each sentence is a TTS request of its own anyway).
        """
        if not self._sentences:
            return
        sentence = self._sentences[-1]
        if sentence.mark is not None or self._sent <= sentence.start:
            return
        if self._encoder is not None:
            await self._send_media(self._encoder.flush(), link)
        await self._started.wait()
        self._marks_sent += 1
        sentence.mark, sentence.end = f"s{self._marks_sent}", self._sent
        self._marks[sentence.mark] = self._sent
        await link.send(
            _json({"event": "mark", "streamSid": self.stream_sid, "mark": {"name": sentence.mark}})
        )

    async def _clear(self, link: Link) -> None:
        """Barge-in: drop what Twilio has not played yet (only if there is any)."""
        if self._encoder is not None:
            self._encoder = G711Encoder("mulaw", self._encoder.source)  # drop its tail
        if self._played >= self._sent or self.stream_sid is None:
            return
        self._cleared.update(self._marks)
        self._marks.clear()
        self._played = self._sent  # nothing of it is waiting any more
        self._notify()
        await link.send(_json({"event": "clear", "streamSid": self.stream_sid}))

    # -- the pipeline's playback hooks -------------------------------------------

    def heard(self, spoken: Sequence[str]) -> list[str]:
        """Of the reply's sentences ``spoken`` (sent), those whose marks came back."""
        out: list[str] = []
        for text, sentence in zip(spoken, self._sentences, strict=False):
            if sentence.text != text or not sentence.heard:
                break
            out.append(text)
        return out

    async def played(self, upto: int) -> None:
        """Return once Twilio has played (or we cleared) the first ``upto`` bytes of reply audio."""
        while self._sent < upto and not self._sent_all:
            await self._changed.wait()
        if self._link is not None and not self._sent_all:
            await self._end_sentence(self._link)
        while self._played < upto and not self._sent_all:
            await self._changed.wait()

    def _hung_up(self) -> None:
        """The call is over: nothing more will be played, so nobody waits for it."""
        self._marks.clear()
        self._sent_all = True
        self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()


def _field(message: Mapping[str, Any], name: str) -> dict[str, Any]:
    value = message.get(name)
    if not isinstance(value, dict):
        raise ProtocolError(f'a {message.get("event")} message needs a "{name}" object')
    return value


def _b64(payload: object) -> bytes:
    if not isinstance(payload, str):
        raise ProtocolError("media.payload must be a base64 string")
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ProtocolError(f"media.payload is not valid base64: {exc}") from exc


def _json(message: dict[str, Any]) -> str:
    import json

    return json.dumps(message, separators=(",", ":"))


def signature_valid(auth_token: str, url: str, signature: str | None) -> bool:
    """Whether ``signature`` (``X-Twilio-Signature``) signs ``url`` with ``auth_token``.

    Twilio signs the full URL it requested (base64 of HMAC-SHA1 keyed with
    the auth token; a WebSocket upgrade has no POST parameters). Like
    Twilio's own validator, the URL is tried with its port removed and with
    the default one added; the comparison takes constant time.
    """
    if not signature:
        return False
    candidates = {url, _with_port(url, add=False), _with_port(url, add=True)}
    ok = False
    for candidate in candidates:
        digest = hmac.new(auth_token.encode(), candidate.encode(), hashlib.sha1).digest()
        ok |= hmac.compare_digest(base64.b64encode(digest).decode(), signature)
    return ok


def _with_port(url: str, *, add: bool) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    if not add:
        netloc = host
    else:
        port = parts.port or (443 if parts.scheme in ("https", "wss") else 80)
        netloc = f"{host}:{port}"
    if parts.username:
        netloc = f"{parts.username}{':' + parts.password if parts.password else ''}@{netloc}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
