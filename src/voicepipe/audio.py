"""Audio formats and PCM16 helpers: WAV in and out, chunking, resampling.

voicepipe works in raw little-endian 16-bit PCM ("pcm16"); every audio chunk
that crosses a provider or the pipeline is plain ``bytes`` in a declared
:class:`AudioFormat`. NumPy and soxr are imported lazily so that
``import voicepipe`` stays fast.
"""

from __future__ import annotations

import io
import wave
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from voicepipe.errors import AudioFormatError

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

__all__ = [
    "AudioFormat",
    "Resampler",
    "chunk_pcm",
    "pcm16_rms",
    "read_wav",
    "resample",
    "to_mono",
    "wav_bytes",
    "write_wav",
]

SAMPLE_WIDTH = 2  # bytes per PCM16 sample
_BYTES_LIKE = (bytes, bytearray, memoryview)


@dataclass(frozen=True, slots=True)
class AudioFormat:
    """The shape of a PCM stream: sample rate, channels and sample encoding.

    Only ``pcm16`` (signed 16-bit little-endian) is supported; it is what
    every STT accepts and every TTS can produce.
    """

    sample_rate: int = 16000
    channels: int = 1
    encoding: Literal["pcm16"] = "pcm16"

    def __post_init__(self) -> None:
        if not 8000 <= self.sample_rate <= 192000:
            raise AudioFormatError(
                f"sample_rate must be between 8000 and 192000 Hz, got {self.sample_rate}"
            )
        if self.channels not in (1, 2):
            raise AudioFormatError(f"channels must be 1 or 2, got {self.channels}")
        if self.encoding != "pcm16":
            raise AudioFormatError(f"encoding must be 'pcm16', got {self.encoding!r}")

    @property
    def frame_size(self) -> int:
        """Bytes per sample frame (all channels of one sample instant)."""
        return SAMPLE_WIDTH * self.channels

    @property
    def bytes_per_second(self) -> int:
        return self.sample_rate * self.frame_size

    def bytes_for(self, ms: float) -> int:
        """Bytes in ``ms`` milliseconds of audio, rounded down to whole frames."""
        frames = int(self.sample_rate * ms / 1000)
        return frames * self.frame_size

    def duration(self, nbytes: int) -> float:
        """Seconds of audio in ``nbytes`` bytes."""
        return nbytes / self.bytes_per_second

    def check_chunk(self, chunk: object) -> bytes:
        """Return ``chunk`` if it is well-formed audio in this format, else raise.

        The error says what was expected, so a client sending the wrong thing
        learns how to fix it.
        """
        if type(chunk) is bytes:  # the common case, checked first: this runs for every chunk
            data = chunk
        elif isinstance(chunk, _BYTES_LIKE):
            data = bytes(chunk)
        else:
            raise AudioFormatError(
                f"audio chunks must be bytes of raw PCM16, got {type(chunk).__name__}"
            )
        if data.startswith(b"RIFF") and data[8:12] == b"WAVE":
            raise AudioFormatError(
                "got a WAV file where raw PCM16 was expected; strip the header "
                "(voicepipe.audio.read_wav does) and send the samples only"
            )
        if len(data) % (SAMPLE_WIDTH * self.channels):
            raise AudioFormatError(
                f"audio chunk of {len(data)} bytes is not a whole number of "
                f"{self.frame_size}-byte PCM16 frames ({self.describe()})"
            )
        return data

    def describe(self) -> str:
        layout = "mono" if self.channels == 1 else "stereo"
        return f"{self.encoding} {layout} at {self.sample_rate} Hz"


def chunk_pcm(pcm: bytes, fmt: AudioFormat, ms: float = 20) -> Iterator[bytes]:
    """Cut PCM into chunks of ``ms`` milliseconds; the last one may be shorter."""
    size = fmt.bytes_for(ms)
    if size <= 0:
        raise ValueError(f"chunk length {ms} ms is shorter than one sample")
    for start in range(0, len(pcm), size):
        yield pcm[start : start + size]


def read_wav(source: str | Path | bytes) -> tuple[bytes, AudioFormat]:
    """Read a PCM16 WAV file (a path or the file's bytes) into samples and format."""
    handle: Any = io.BytesIO(source) if isinstance(source, bytes) else str(source)
    try:
        with wave.open(handle, "rb") as wav:
            width = wav.getsampwidth()
            if width != SAMPLE_WIDTH:
                raise AudioFormatError(
                    f"WAV has {8 * width}-bit samples; voicepipe needs 16-bit PCM "
                    "(convert with: sox in.wav -b 16 out.wav)"
                )
            fmt = AudioFormat(sample_rate=wav.getframerate(), channels=wav.getnchannels())
            return wav.readframes(wav.getnframes()), fmt
    except (wave.Error, EOFError) as exc:
        raise AudioFormatError(f"not a readable PCM WAV file: {exc}") from exc


def wav_bytes(pcm: bytes, fmt: AudioFormat) -> bytes:
    """Wrap PCM samples in a WAV container, in memory."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as wav:
        wav.setnchannels(fmt.channels)
        wav.setsampwidth(SAMPLE_WIDTH)
        wav.setframerate(fmt.sample_rate)
        wav.writeframes(pcm)
    return buffer.getvalue()


def write_wav(path: str | Path, pcm: bytes, fmt: AudioFormat) -> None:
    """Write PCM samples to a WAV file."""
    Path(path).write_bytes(wav_bytes(pcm, fmt))


def _samples(pcm: bytes) -> npt.NDArray[np.int16]:
    import numpy as np

    return np.frombuffer(pcm, dtype="<i2")


def pcm16_rms(pcm: bytes) -> float:
    """Root-mean-square level of PCM16 samples (0 for empty input)."""
    if len(pcm) < SAMPLE_WIDTH:
        return 0.0
    import numpy as np

    samples = _samples(pcm[: len(pcm) - len(pcm) % SAMPLE_WIDTH]).astype(np.float32)
    return float(np.sqrt(np.dot(samples, samples) / samples.size))


def to_mono(pcm: bytes, fmt: AudioFormat) -> bytes:
    """Average the channels of interleaved PCM16 into mono."""
    if fmt.channels == 1:
        return pcm
    import numpy as np

    frames = _samples(pcm).reshape(-1, fmt.channels).astype(np.int32)
    return bytes(frames.mean(axis=1).astype("<i2").tobytes())


def resample(pcm: bytes, src: AudioFormat, dst: AudioFormat) -> bytes:
    """Convert a whole PCM buffer from one format to another (rate and channels)."""
    resampler = Resampler(src, dst)
    return resampler.process(pcm) + resampler.flush()


class Resampler:
    """Streaming sample-rate (and channel) conversion with soxr.

    Feed chunks in order with :meth:`process`; call :meth:`flush` once at the
    end for the samples soxr holds back. Identity conversions cost nothing.
    """

    def __init__(self, src: AudioFormat, dst: AudioFormat, *, quality: str = "HQ") -> None:
        if dst.channels != 1 and src.channels != dst.channels:
            raise AudioFormatError("can only convert to mono or keep the channel count")
        self.src = src
        self.dst = dst
        self._stream: Any = None
        if src.sample_rate != dst.sample_rate:
            import soxr

            self._stream = soxr.ResampleStream(
                src.sample_rate, dst.sample_rate, dst.channels, dtype="int16", quality=quality
            )

    def process(self, pcm: bytes) -> bytes:
        if self.src.channels != self.dst.channels:
            pcm = to_mono(pcm, self.src)
        if self._stream is None or not pcm:
            return pcm
        samples = _samples(pcm)
        if self.dst.channels > 1:
            samples = samples.reshape(-1, self.dst.channels)
        out = self._stream.resample_chunk(samples, last=False)
        return bytes(out.tobytes())

    def flush(self) -> bytes:
        if self._stream is None:
            return b""
        import numpy as np

        empty = np.zeros((0, self.dst.channels) if self.dst.channels > 1 else 0, dtype="<i2")
        out = self._stream.resample_chunk(empty, last=True)
        return bytes(out.tobytes())
