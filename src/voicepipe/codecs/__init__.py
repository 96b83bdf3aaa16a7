"""Streaming audio codecs: what browsers and phones send, decoded to PCM16, and back.

Every decoder turns the bytes of one encoded stream, fed in pieces of any
size, into PCM16 mono at the session's rate; every encoder turns PCM16 into
one codec's bytes and :meth:`Encoder.flush` pushes out everything it holds at
the end of a reply. One module per family:

* :mod:`voicepipe.codecs.g711`: μ-law and A-law at 8 kHz (phones), NumPy tables.
* :mod:`voicepipe.codecs.container`: WebM/Opus, Ogg/Opus, MP4/AAC and MP3 in,
  through PyAV (the ``codecs`` extra), streaming or as whole clips.
* :mod:`voicepipe.codecs.encoders`: MP3 (for ``MediaSource('audio/mpeg')``) and
  Opus in WebM or Ogg out, through PyAV.

::

    decoder = open_decoder("webm", rate=16000)      # or sniff(first_bytes)
    pcm = await decode(decoder, piece)              # off the event loop when it costs
    pcm += await finish(decoder)

Errors are :class:`CodecError` (an :class:`~voicepipe.errors.AudioFormatError`)
and say what was expected.
"""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING, Literal, Protocol, get_args

import anyio

from voicepipe.audio import AudioFormat
from voicepipe.errors import AudioFormatError

if TYPE_CHECKING:
    from anyio import CapacityLimiter

__all__ = [
    "CONTAINER_SIGNATURES",
    "CodecError",
    "Decoder",
    "Encoder",
    "InputCodec",
    "OutputCodec",
    "decode",
    "encode",
    "end_reply",
    "finish",
    "input_codec",
    "open_decoder",
    "open_encoder",
    "output_codec",
    "sniff",
]

InputCodec = Literal["pcm16", "webm", "ogg", "mp4", "mp3", "mulaw", "alaw"]
"""Encodings a decoder reads (``pcm16`` is raw PCM16, no decoding needed)."""

OutputCodec = Literal["pcm16", "mp3", "opus", "webm", "ogg", "mulaw", "alaw"]
"""Encodings an encoder writes (``opus`` is Opus in WebM, as MediaSource plays it)."""

CONTAINER_SIGNATURES = {
    "webm": "1A 45 DF A3 (EBML, as Chromium's MediaRecorder records)",
    "ogg": "'OggS' (as Firefox's MediaRecorder records)",
    "mp4": "'ftyp' at byte 4 (as Safari's MediaRecorder records)",
    "mp3": "'ID3' or an MPEG audio frame sync FF Ex/FF Fx",
}
"""How each container's first bytes look, for sniffing and for error messages."""

SNIFF_BYTES = 12
"""Bytes :func:`sniff` needs before it can say "none of these"."""

INLINE_BYTES = 4096
"""The largest piece a cheap codec (``threaded = False``) handles on the event loop.

G.711 decodes a 160-byte phone frame in about 35 µs, but a MiB in 35 ms (it
is upsampled), and a client may send pieces that big: those go to a worker
thread like the rest.
"""


class CodecError(AudioFormatError):
    """Bytes that the declared or detected codec cannot decode, or a codec that is missing."""


def require_pyav(task: str) -> None:
    """Raise :class:`CodecError` naming the extra if PyAV is missing, without importing it:
    ``import av`` takes 130-240 ms, and codecs are opened on the event loop (the import
    happens in the first call that does the work, in a worker thread)."""
    if importlib.util.find_spec("av") is None:
        raise CodecError(f"{task} needs PyAV: pip install 'voicepipe[codecs]'")


class Decoder(Protocol):
    """Bytes of one encoded stream in, PCM16 mono at :attr:`rate` out.

    Feed the stream in order, in pieces of any size; each call returns the
    PCM that is complete so far. :meth:`flush` ends the stream and returns the
    rest. ``threaded`` decoders cost real CPU: call them through :func:`decode`.
    """

    name: str
    rate: int
    threaded: bool

    def decode(self, data: bytes) -> bytes: ...

    def flush(self) -> bytes: ...

    def close(self) -> None:
        """Release the decoder (its thread) without decoding the rest."""


class Encoder(Protocol):
    """PCM16 in (in :attr:`source` format), one codec's bytes out.

    :meth:`flush` at the end of each reply returns everything the encoder
    still holds, so a reply's last words are never stuck in it; the encoder
    then takes the next reply. ``content_type`` is the MIME type a player needs.
    """

    name: str
    content_type: str
    source: AudioFormat
    threaded: bool

    def encode(self, pcm: bytes) -> bytes: ...

    def flush(self) -> bytes: ...


def sniff(head: bytes) -> str | None:
    """The container that ``head`` (a stream's first bytes) starts, or ``None``.

    Returns ``"webm"``, ``"ogg"``, ``"mp4"`` or ``"mp3"``; ``None`` means no
    container is recognised (raw PCM, or too few bytes yet: see ``SNIFF_BYTES``).
    """
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "webm"
    if head.startswith(b"OggS"):
        return "ogg"
    if head[4:8] == b"ftyp":
        return "mp4"
    if head.startswith(b"ID3") or (len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0):
        return "mp3"
    return None


def input_codec(name: str) -> InputCodec:
    """Check a client's declared input codec, or raise a :class:`CodecError` listing them."""
    if name not in get_args(InputCodec):
        raise CodecError(
            f"unknown input codec {name!r}; use one of {', '.join(get_args(InputCodec))}"
        )
    return name  # type: ignore[return-value]


def output_codec(name: str) -> OutputCodec:
    """Check a client's requested output codec, or raise a :class:`CodecError` listing them."""
    if name not in get_args(OutputCodec):
        raise CodecError(
            f"unknown output codec {name!r}; use one of {', '.join(get_args(OutputCodec))}"
        )
    return name  # type: ignore[return-value]


def open_decoder(name: str, rate: int = 16000) -> Decoder:
    """A streaming decoder of ``name`` (see :data:`InputCodec`, not ``pcm16``) to ``rate`` Hz."""
    codec = input_codec(name)
    if codec in ("mulaw", "alaw"):
        from voicepipe.codecs.g711 import G711Decoder

        return G711Decoder(codec, rate)
    if codec == "pcm16":
        raise CodecError("pcm16 needs no decoder; pass the audio on as it is")
    from voicepipe.codecs.container import ContainerDecoder

    return ContainerDecoder(codec, rate)


def open_encoder(name: str, source: AudioFormat) -> Encoder:
    """A streaming encoder of PCM16 in ``source`` format to ``name`` (see :data:`OutputCodec`)."""
    codec = output_codec(name)
    if codec in ("mulaw", "alaw"):
        from voicepipe.codecs.g711 import G711Encoder

        return G711Encoder(codec, source)
    if codec == "pcm16":
        raise CodecError("pcm16 needs no encoder; send the audio as it is")
    from voicepipe.codecs.encoders import MP3Encoder, OpusEncoder

    if codec == "mp3":
        return MP3Encoder(source)
    return OpusEncoder(source, container="ogg" if codec == "ogg" else "webm")


async def decode(decoder: Decoder, data: bytes, *, limiter: CapacityLimiter | None = None) -> bytes:
    """Feed ``data`` to ``decoder``; in a worker thread unless the decoder is cheap and
    the piece small (see :data:`INLINE_BYTES`)."""
    if not decoder.threaded and len(data) <= INLINE_BYTES:
        return decoder.decode(data)
    return await anyio.to_thread.run_sync(decoder.decode, data, limiter=limiter)


async def finish(decoder: Decoder, *, limiter: CapacityLimiter | None = None) -> bytes:
    """End ``decoder``'s stream and return the PCM it still held."""
    if not decoder.threaded:
        return decoder.flush()
    return await anyio.to_thread.run_sync(decoder.flush, limiter=limiter)


async def encode(encoder: Encoder, pcm: bytes, *, limiter: CapacityLimiter | None = None) -> bytes:
    """Encode ``pcm``; in a worker thread if the encoder is not trivially cheap (the
    PCM is the TTS's, never a client's: G.711 encodes a MiB of it in ~3 ms)."""
    if not encoder.threaded:
        return encoder.encode(pcm)
    return await anyio.to_thread.run_sync(encoder.encode, pcm, limiter=limiter)


async def end_reply(encoder: Encoder, *, limiter: CapacityLimiter | None = None) -> bytes:
    """Everything ``encoder`` still holds of the reply (call at the end of each reply)."""
    if not encoder.threaded:
        return encoder.flush()
    return await anyio.to_thread.run_sync(encoder.flush, limiter=limiter)
