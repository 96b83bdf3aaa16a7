"""Real encoded audio for the codec and dialect tests, made here with PyAV.

:func:`browser_webm` writes WebM/Opus the way Chromium's MediaRecorder does
(48 kHz mono, 60 ms Opus packets, a Cluster per timeslice); the other
helpers write Ogg/Opus (Firefox), fragmented MP4/AAC (Safari) and MP3.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytest

av: Any = pytest.importorskip("av")


def _frame(pcm: bytes, rate: int) -> Any:
    frame = av.AudioFrame.from_ndarray(
        np.frombuffer(pcm, dtype="<i2").reshape(1, -1), format="s16", layout="mono"
    )
    frame.sample_rate = rate
    frame.pts = 0
    return frame


def encode(
    pcm: bytes,
    rate: int,
    container: str,
    codec: str,
    *,
    bit_rate: int = 32000,
    options: dict[str, str] | None = None,
    codec_options: dict[str, str] | None = None,
) -> bytes:
    """``pcm`` (PCM16 mono at ``rate``) encoded with ``codec`` in ``container``, in memory."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format=container, options=options or {}) as out:
        stream = out.add_stream(codec, rate=48000 if codec == "libopus" else rate, layout="mono")
        stream.bit_rate = bit_rate
        if codec_options:
            stream.options = codec_options
        for packet in stream.encode(_frame(pcm, rate)):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buffer.getvalue()


def browser_webm(pcm: bytes, rate: int = 16000, *, bit_rate: int = 32000) -> bytes:
    """WebM/Opus like Chromium's ``MediaRecorder`` with ``start(250)``."""
    return encode(
        pcm,
        rate,
        "webm",
        "libopus",
        bit_rate=bit_rate,
        options={"live": "1", "cluster_time_limit": "250"},
        codec_options={"frame_duration": "60"},
    )


def firefox_ogg(pcm: bytes, rate: int = 16000) -> bytes:
    """Ogg/Opus like Firefox's ``MediaRecorder``."""
    return encode(pcm, rate, "ogg", "libopus", codec_options={"frame_duration": "20"})


def safari_mp4(pcm: bytes, rate: int = 16000) -> bytes:
    """Fragmented MP4/AAC like Safari's ``MediaRecorder``."""
    return encode(
        pcm, rate, "mp4", "aac", bit_rate=64000, options={"movflags": "frag_keyframe+empty_moov"}
    )


def mp3(pcm: bytes, rate: int = 16000) -> bytes:
    return encode(pcm, rate, "mp3", "libmp3lame", bit_rate=48000)


def peak_hz(pcm: bytes, rate: int) -> float:
    """The strongest frequency in ``pcm``: a tone survives a lossy round trip."""
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(samples.size)))
    return float(np.argmax(spectrum) * rate / samples.size)


def rms(pcm: bytes) -> float:
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    return float(np.sqrt(np.mean(samples**2))) if samples.size else 0.0
