"""The seed voice assistant's React page, served unchanged.

That page (``ruizguille/voice-assistant``, ``frontend/``) records with
``new MediaRecorder(stream)`` and ``start(250)`` and sends every blob as a
binary frame: one continuous WebM/Opus stream (Chromium) cut mid-element.
It plays binary frames by appending them to one ``MediaSource`` buffer of
type ``audio/mpeg``, and reads four event types: ``transcript_interim``,
``transcript_final``, ``assistant`` and ``finish``.

voicepipe's own dialect already serves it on ``/listen``: the WebM stream is
recognised by its first bytes, and ``?input=webm&output=mp3`` in the page's
URL (``NEXT_PUBLIC_WEBSOCKET_URL``) also gets the reply audio as MP3. This
dialect is that setup as a default, for a route that serves only this page:
WebM in, MP3 out, and only the events the page reads (plus ``error``). A
stream whose first blob was lost (the page drops blobs while its socket is
still connecting) gets an error that says so, instead of noise.
"""

from __future__ import annotations

from voicepipe.codecs import CodecError
from voicepipe.events import AudioChunk, Event, Interrupted
from voicepipe.transports.dialect import Link
from voicepipe.transports.dialects.voicepipe import VoicepipeDialect

__all__ = ["SEED_EVENTS", "SeedDialect"]

SEED_EVENTS = frozenset({"transcript_interim", "transcript_final", "assistant", "finish", "error"})
"""The event types the page reads (it ignores others; sending them is wasted bytes)."""

_LOST_HEADER = (
    "; the first blob of the recording (the WebM header) never arrived: the page "
    "drops blobs recorded before its socket opened. Reload the page to start a new recording"
)


class SeedDialect(VoicepipeDialect):
    """voicepipe's dialect with the seed page's defaults: ``input=webm``, ``output=mp3``."""

    async def start(self, link: Link) -> None:
        await super().start(link)
        query = link.query
        try:
            if self.audio_in is not None and not query.get("input"):
                self.audio_in.declare("webm")
            if not query.get("output"):
                self._output("mp3", link)
        except CodecError as exc:
            await link.fail(str(exc))

    async def _on_audio(self, data: bytes, link: Link) -> None:
        if (
            self.audio_in is not None
            and not self.audio_in.started
            and self.audio_in.codec == "webm"
            and not data.startswith(b"\x1a\x45\xdf\xa3")
        ):
            self.broken = True
            await link.fail(f"expected the WebM header (1A 45 DF A3) first{_LOST_HEADER}")
            return
        await super()._on_audio(data, link)

    async def on_event(self, event: Event, link: Link) -> None:
        # Audio, the page's own types, and `interrupted` (it resets the encoder; the page
        # ignores it) go out; the rest would be bytes the page throws away.
        if isinstance(event, AudioChunk | Interrupted) or event.type in SEED_EVENTS:
            await super().on_event(event, link)
