"""PCM16 to MP3 or to Opus in WebM/Ogg, streaming, one reply at a time (PyAV).

* :class:`MP3Encoder` writes bare MPEG audio frames (no ID3, no Xing header),
  which ``MediaSource('audio/mpeg')`` plays when appended one by one.
* :class:`OpusEncoder` writes Opus in a WebM (``MediaSource('audio/webm;
  codecs="opus"')``) or Ogg container.

Both hold audio back (LAME up to ~90 ms, libopus 27 ms, the muxer a cluster
or page), so :meth:`flush` ends the reply's stream: everything comes out, and
the next reply starts a new one (an MP3 encoder, or a WebM/Ogg stream with its
own header; MSE in ``sequence`` mode and Ogg chaining both accept that).
"""

from __future__ import annotations

from typing import Any

from voicepipe.audio import AudioFormat, Resampler
from voicepipe.codecs import CodecError, require_pyav

__all__ = ["MP3Encoder", "OpusEncoder"]

MP3_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)
OPUS_RATES = (8000, 12000, 16000, 24000, 48000)


def _av() -> Any:
    try:
        import av
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise CodecError(
            "encoding MP3 or Opus needs PyAV: pip install 'voicepipe[codecs]'"
        ) from exc
    return av


def _frame(av: Any, pcm: bytes, rate: int, pts: int) -> Any:
    import numpy as np

    samples = np.frombuffer(pcm, dtype="<i2").reshape(1, -1)
    frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
    frame.sample_rate = rate
    frame.pts = pts
    return frame


class _Sink:
    """Where a muxer writes: collects bytes until the encoder hands them out."""

    def __init__(self) -> None:
        self.buf = bytearray()

    def write(self, data: bytes) -> int:
        self.buf += data
        return len(data)

    def take(self) -> bytes:
        out = bytes(self.buf)
        self.buf.clear()
        return out


class _PCMEncoder:
    """Shared part: mono at a rate the codec takes, odd bytes carried between calls."""

    threaded = True

    def __init__(self, source: AudioFormat, rates: tuple[int, ...], fallback: int) -> None:
        require_pyav("encoding MP3 or Opus")
        self.source = source
        self.rate = source.sample_rate if source.sample_rate in rates else fallback
        self._target = AudioFormat(self.rate)
        self._resampler = Resampler(source, self._target)
        self._carry = b""

    def _pcm(self, pcm: bytes, *, last: bool = False) -> bytes:
        pcm = self._carry + self._resampler.process(pcm)
        if last:
            pcm += self._resampler.flush()
            self._resampler = Resampler(self.source, self._target)
        cut = len(pcm) - len(pcm) % 2
        self._carry = pcm[cut:]
        return pcm[:cut]


class MP3Encoder(_PCMEncoder):
    """PCM16 to MP3 frames (``audio/mpeg``) at ``bit_rate``; a new LAME stream per reply."""

    name = "mp3"
    content_type = "audio/mpeg"

    def __init__(self, source: AudioFormat, *, bit_rate: int = 48000) -> None:
        super().__init__(source, MP3_RATES, 24000)
        self.bit_rate = bit_rate
        self._ctx: Any = None
        self._pts = 0

    def _context(self) -> Any:
        if self._ctx is None:
            ctx = _av().CodecContext.create("libmp3lame", "w")
            ctx.sample_rate = self.rate
            ctx.layout = "mono"
            ctx.format = "s16p"
            ctx.bit_rate = self.bit_rate
            ctx.options = {"compression_level": "7"}  # half the CPU of the default, same size
            self._ctx = ctx
            self._pts = 0
        return self._ctx

    def _run(self, frame: Any) -> bytes:
        return b"".join(bytes(p) for p in self._context().encode(frame))

    def encode(self, pcm: bytes) -> bytes:
        return self._write(self._pcm(pcm))

    def _write(self, pcm: bytes) -> bytes:
        if not pcm:
            return b""
        ctx = self._context()
        frame = _frame(_av(), pcm, self.rate, self._pts)
        self._pts += len(pcm) // 2
        return b"".join(bytes(p) for p in ctx.encode(frame))

    def flush(self) -> bytes:
        """The reply's last frames; the next :meth:`encode` starts a new MP3 stream."""
        out = self._write(self._pcm(b"", last=True))
        if self._ctx is not None:
            out += self._run(None)
            self._ctx = None
        return out


class OpusEncoder(_PCMEncoder):
    """PCM16 to Opus in a WebM (default) or Ogg stream, one stream per reply.

    ``bit_rate`` 32 kbps is plenty for speech; ``complexity`` 5 costs a third
    of libopus's default 10 for no audible loss on speech.
    """

    def __init__(
        self,
        source: AudioFormat,
        *,
        container: str = "webm",
        bit_rate: int = 32000,
        complexity: int = 5,
    ) -> None:
        if container not in ("webm", "ogg"):
            raise CodecError(f"Opus goes in 'webm' or 'ogg', not {container!r}")
        super().__init__(source, OPUS_RATES, 48000)
        self.name = container
        self.content_type = 'audio/webm; codecs="opus"' if container == "webm" else "audio/ogg"
        self.container = container
        self.bit_rate = bit_rate
        self.complexity = complexity
        self._sink = _Sink()
        self._out: Any = None
        self._stream: Any = None
        self._pts = 0

    def _open(self) -> Any:
        if self._out is None:
            options = (
                {"live": "1", "cluster_time_limit": "100"}
                if self.container == "webm"
                else {"page_duration": "100000"}
            )
            self._out = _av().open(self._sink, "w", format=self.container, options=options)
            stream = self._out.add_stream("libopus", rate=self.rate, layout="mono")
            stream.bit_rate = self.bit_rate
            stream.codec_context.options = {"compression_level": str(self.complexity)}
            self._stream = stream
            self._pts = 0
        return self._stream

    def encode(self, pcm: bytes) -> bytes:
        return self._write(self._pcm(pcm))

    def _write(self, pcm: bytes) -> bytes:
        if not pcm:
            return b""
        stream = self._open()
        frame = _frame(_av(), pcm, self.rate, self._pts)
        self._pts += len(pcm) // 2
        for packet in stream.encode(frame):
            self._out.mux(packet)
        return self._sink.take()

    def flush(self) -> bytes:
        """End this reply's stream (all audio and the trailer out); the next encode starts anew."""
        out = self._write(self._pcm(b"", last=True))
        if self._out is not None:
            for packet in self._stream.encode(None):
                self._out.mux(packet)
            self._out.close()
            self._out = self._stream = None
        return out + self._sink.take()
