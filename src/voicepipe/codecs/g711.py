"""μ-law and A-law (G.711) at 8 kHz, the audio of phone calls, with NumPy lookup tables.

The tables are bit-identical to the standard library's deprecated ``audioop``
(checked on every int16 value and every code). Both directions cost a few
microseconds per 20 ms frame, so they run inline, not in a thread; rate
conversion to and from 8 kHz uses :class:`voicepipe.audio.Resampler` (soxr).
Upsampling the caller's audio uses soxr's quick cubic quality: soxr's
filtered qualities release 20 ms frames in bursts of ~100 ms, a delay every
turn would pay, and telephone-band audio has nothing to alias on the way up.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING, Literal

from voicepipe.audio import AudioFormat, Resampler

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

__all__ = [
    "G711Decoder",
    "G711Encoder",
    "alaw_to_pcm",
    "mulaw_to_pcm",
    "pcm_to_alaw",
    "pcm_to_mulaw",
]

Law = Literal["mulaw", "alaw"]

RATE = 8000
"""G.711's sample rate: 8,000 one-byte samples a second (20 ms = 160 bytes)."""

TELEPHONE = AudioFormat(RATE)

_SEG_END = (0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF)
_ASEG_END = (0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF)


@cache
def _tables(law: Law) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int16]]:
    """(encode table indexed by the uint16 view of a sample, decode table indexed by code)."""
    import numpy as np

    linear = np.arange(-32768, 32768, dtype=np.int32)
    code = np.arange(256, dtype=np.int32)
    if law == "mulaw":
        x = linear >> 2
        mask = np.where(x < 0, 0x7F, 0xFF)
        v = np.minimum(np.abs(x), 8159) + 33
        seg = np.searchsorted(np.array(_SEG_END), v)
        enc = np.where(seg > 7, 0x7F, (seg << 4) | ((v >> (seg + 1)) & 0xF)) ^ mask
        u = ~code & 0xFF
        t = (((u & 0x0F) << 3) + 0x84) << ((u & 0x70) >> 4)
        dec = np.where(u & 0x80, 0x84 - t, t - 0x84)
    else:
        x = linear >> 3
        mask = np.where(x >= 0, 0xD5, 0x55)
        v = np.where(x >= 0, x, -x - 1)
        seg = np.searchsorted(np.array(_ASEG_END), v)
        aval = np.where(seg >= 2, (v >> seg) & 0xF, (v >> 1) & 0xF) | (seg << 4)
        enc = np.where(seg >= 8, 0x7F ^ mask, aval ^ mask)
        a = code ^ 0x55
        t = (a & 0x0F) << 4
        s = (a & 0x70) >> 4
        t = np.where(
            s == 0, t + 8, np.where(s == 1, t + 0x108, (t + 0x108) << np.maximum(s - 1, 0))
        )
        dec = np.where(a & 0x80, t, -t)
    table = np.empty(65536, dtype=np.uint8)
    table[linear & 0xFFFF] = enc & 0xFF
    return table, dec.astype("<i2")


def _encode(law: Law, pcm: bytes) -> bytes:
    import numpy as np

    table, _ = _tables(law)
    return bytes(table[np.frombuffer(pcm, dtype="<u2")].tobytes())


def _decode(law: Law, data: bytes) -> bytes:
    import numpy as np

    _, table = _tables(law)
    return bytes(table[np.frombuffer(data, dtype=np.uint8)].tobytes())


def pcm_to_mulaw(pcm: bytes) -> bytes:
    """PCM16 samples to μ-law bytes (one per sample, same rate)."""
    return _encode("mulaw", pcm)


def mulaw_to_pcm(data: bytes) -> bytes:
    """μ-law bytes to PCM16 samples (same rate)."""
    return _decode("mulaw", data)


def pcm_to_alaw(pcm: bytes) -> bytes:
    """PCM16 samples to A-law bytes (one per sample, same rate)."""
    return _encode("alaw", pcm)


def alaw_to_pcm(data: bytes) -> bytes:
    """A-law bytes to PCM16 samples (same rate)."""
    return _decode("alaw", data)


def _upsampler(rate: int) -> Resampler:
    return Resampler(TELEPHONE, AudioFormat(rate), quality="QQ")


class G711Decoder:
    """μ-law or A-law at 8 kHz to PCM16 mono at ``rate`` (every byte is a sample: no framing)."""

    threaded = False

    def __init__(self, law: Law, rate: int = 16000) -> None:
        self.name: str = law
        self.rate = rate
        self._law = law
        self._resampler = _upsampler(rate)

    def decode(self, data: bytes) -> bytes:
        return self._resampler.process(_decode(self._law, data)) if data else b""

    def flush(self) -> bytes:
        tail = self._resampler.flush()
        self._resampler = _upsampler(self.rate)
        return tail

    def close(self) -> None:
        pass


class G711Encoder:
    """PCM16 in ``source`` format to μ-law or A-law at 8 kHz (raw bytes, no header)."""

    threaded = False
    content_type = "audio/basic"

    def __init__(self, law: Law, source: AudioFormat) -> None:
        self.name: str = law
        self.source = source
        self.content_type = "audio/x-mulaw" if law == "mulaw" else "audio/x-alaw"
        self._law = law
        self._resampler = Resampler(source, TELEPHONE)

    def encode(self, pcm: bytes) -> bytes:
        pcm = self._resampler.process(pcm)
        return _encode(self._law, pcm) if pcm else b""

    def flush(self) -> bytes:
        """Encode what the resampler holds; the next reply starts a fresh stream."""
        tail = self._resampler.flush()
        self._resampler = Resampler(self.source, TELEPHONE)
        return _encode(self._law, tail) if tail else b""
