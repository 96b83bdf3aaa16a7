"""A client's audio codec on each side of a session, for any dialect.

:class:`ClientAudio` turns what a client sends (PCM16, or WebM/Ogg/MP4/MP3
streams, or μ-law/A-law) into PCM16 in the pipeline's ``input_format``; the
container can be declared or sniffed from the first bytes. :class:`ReplyAudio`
encodes the pipeline's reply audio for the client and flushes at the end of
every reply. Both keep codec work that costs real CPU off the event loop
(:mod:`voicepipe.codecs`). Dialects own one of each per connection.
"""

from __future__ import annotations

from typing import Literal

import anyio

from voicepipe.audio import AudioFormat, Resampler
from voicepipe.codecs import (
    INLINE_BYTES,
    CodecError,
    Decoder,
    Encoder,
    decode,
    encode,
    end_reply,
    finish,
    input_codec,
    open_decoder,
    open_encoder,
    output_codec,
    sniff,
)

__all__ = ["AUTO", "ClientAudio", "ReplyAudio", "parse_input", "parse_output"]

AUTO = "auto"
"""Input codec: a container if the first bytes start one, else raw PCM16."""

InputChoice = Literal["auto", "pcm16", "webm", "ogg", "mp4", "mp3", "mulaw", "alaw"]


def parse_input(name: str | None) -> str:
    """A client's ``input=`` value, checked (``auto`` when absent)."""
    if not name or name == AUTO:
        return AUTO
    return input_codec(name)


def parse_output(name: str | None) -> str:
    """A client's ``output=`` value, checked (``pcm16`` when absent: never guessed)."""
    return output_codec(name or "pcm16")


class ClientAudio:
    """One client's audio stream in ``codec`` to PCM16 in ``target``.

    ``pcm_format`` is the shape of raw PCM16 input (the client may declare
    its own rate; it is resampled). With ``codec="auto"`` the first bytes
    decide: a recognised container is decoded, anything else is PCM16.
    """

    def __init__(
        self, codec: str, target: AudioFormat, pcm_format: AudioFormat | None = None
    ) -> None:
        self.codec = parse_input(codec)
        self.target = target
        self.pcm_format = pcm_format or target
        self._resampler: Resampler | None = None
        self._decoder: Decoder | None = None
        self._seen = False

    @property
    def passthrough(self) -> bool:
        """Whether the audio goes to the pipeline as it comes (PCM16 in its own format,
        once the first piece has come): :meth:`feed` would return it unchanged."""
        return self._seen and self._decoder is None and self._resampler is None

    @property
    def started(self) -> bool:
        """Whether any audio came (a declaration after that is too late)."""
        return self._seen

    @property
    def detected(self) -> str | None:
        """The codec in use once audio came (``pcm16`` or a decoder's name)."""
        if not self._seen:
            return None
        return self._decoder.name if self._decoder is not None else "pcm16"

    def declare(self, codec: str | None = None, pcm_format: AudioFormat | None = None) -> None:
        """Change the codec or PCM shape before the first audio (raises :class:`CodecError`)."""
        if self._seen:
            raise CodecError("the input codec must be declared before the first audio frame")
        if codec is not None:
            self.codec = parse_input(codec)
        if pcm_format is not None:
            self.pcm_format = pcm_format

    def _open(self, first: bytes) -> None:
        codec = self.codec
        if codec == AUTO:
            codec = sniff(first) or "pcm16"
        if codec == "pcm16":
            fmt = self.pcm_format
            self._resampler = Resampler(fmt, self.target) if fmt != self.target else None
        else:
            self._decoder = open_decoder(codec, self.target.sample_rate)
        self._seen = True

    async def feed(self, data: bytes) -> bytes:
        """PCM16 for the pipeline from the next piece (raises :class:`CodecError`,
        :class:`~voicepipe.errors.AudioFormatError` for malformed PCM that must be
        resampled; PCM already in the pipeline's format is passed on unchecked, as the
        pipeline checks every chunk it is handed)."""
        if not self._seen:
            self._open(data)
        if self._decoder is not None:
            return await decode(self._decoder, data)
        if self._resampler is None:
            return data  # already the pipeline's format: it checks each chunk (once, there)
        pcm = self.pcm_format.check_chunk(data)
        if len(pcm) <= INLINE_BYTES:
            return self._resampler.process(pcm)  # a frame: cheap, on the loop
        # A client may send a MiB in one frame: 26 ms of resampling stalls every session.
        return await anyio.to_thread.run_sync(self._resampler.process, pcm)

    async def end(self) -> bytes:
        """The end of the stream: what the decoder or resampler still held."""
        if self._decoder is not None:
            decoder, self._decoder = self._decoder, None
            try:
                return await finish(decoder)
            finally:
                decoder.close()
        if self._resampler is not None:
            return self._resampler.flush()
        return b""

    def close(self) -> None:
        """Release a decoder thread without decoding the rest (the session is over)."""
        if self._decoder is not None:
            self._decoder.close()


class ReplyAudio:
    """The pipeline's PCM16 reply audio in ``source`` format, encoded as ``codec``.

    ``pcm16`` passes through. Call :meth:`end_reply` when a reply is over (its
    tail comes out) and :meth:`drop` when it was interrupted (the client drops
    what it has, so the encoder's held audio is thrown away too).
    """

    def __init__(self, codec: str, source: AudioFormat) -> None:
        self.codec = parse_output(codec)
        self.source = source
        self._encoder: Encoder | None = None
        if self.codec != "pcm16":
            self._encoder = open_encoder(self.codec, source)

    @property
    def content_type(self) -> str:
        return self._encoder.content_type if self._encoder else "audio/pcm"

    async def chunk(self, pcm: bytes) -> bytes:
        if self._encoder is None:
            return pcm
        return await encode(self._encoder, pcm)

    async def end_reply(self) -> bytes:
        if self._encoder is None:
            return b""
        return await end_reply(self._encoder)

    def drop(self) -> None:
        """Forget what the encoder holds (an interrupted reply): a fresh encoder."""
        if self._encoder is not None:
            self._encoder = open_encoder(self.codec, self.source)
