from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.support import silence, tone
from voicepipe.audio import (
    AudioFormat,
    Resampler,
    chunk_pcm,
    pcm16_rms,
    read_wav,
    resample,
    to_mono,
    wav_bytes,
    write_wav,
)
from voicepipe.errors import AudioFormatError


def test_format_arithmetic() -> None:
    fmt = AudioFormat(16000, 1)
    assert fmt.frame_size == 2
    assert fmt.bytes_per_second == 32000
    assert fmt.bytes_for(20) == 640
    assert fmt.duration(32000) == 1.0
    assert AudioFormat(48000, 2).bytes_for(10) == 1920


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"sample_rate": 100}, "sample_rate"),
        ({"channels": 3}, "channels"),
        ({"encoding": "mulaw"}, "pcm16"),
    ],
)
def test_format_rejects_nonsense(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(AudioFormatError, match=message):
        AudioFormat(**kwargs)  # type: ignore[arg-type]


def test_check_chunk_accepts_whole_frames() -> None:
    fmt = AudioFormat()
    pcm = b"\x01\x00\x02\x00"
    assert fmt.check_chunk(pcm) is pcm  # bytes pass through without a copy
    for like in (bytearray(pcm), memoryview(pcm)):
        checked = fmt.check_chunk(like)
        assert checked == pcm
        assert type(checked) is bytes
    with pytest.raises(AudioFormatError, match="WAV file"):
        fmt.check_chunk(memoryview(wav_bytes(silence(20), fmt)))


def test_check_chunk_odd_bytes_says_what_was_expected() -> None:
    with pytest.raises(AudioFormatError, match=r"3 bytes .* 2-byte PCM16 frames .*16000 Hz"):
        AudioFormat().check_chunk(b"abc")
    with pytest.raises(AudioFormatError, match="4-byte"):
        AudioFormat(16000, 2).check_chunk(b"ab")


def test_check_chunk_rejects_wav_and_non_bytes() -> None:
    with pytest.raises(AudioFormatError, match="WAV file where raw PCM16"):
        AudioFormat().check_chunk(wav_bytes(silence(20), AudioFormat()))
    with pytest.raises(AudioFormatError, match="got str"):
        AudioFormat().check_chunk("hello")


def test_chunk_pcm_cuts_exact_lengths() -> None:
    pcm = silence(110)
    pieces = list(chunk_pcm(pcm, AudioFormat(), 20))
    assert [len(p) for p in pieces] == [640] * 5 + [320]
    assert b"".join(pieces) == pcm


def test_wav_roundtrip(tmp_path: Path) -> None:
    fmt = AudioFormat(22050, 2)
    pcm = tone(100, fmt)
    path = tmp_path / "x.wav"
    write_wav(path, pcm, fmt)
    assert read_wav(path) == (pcm, fmt)
    assert read_wav(path.read_bytes()) == (pcm, fmt)


def test_read_wav_errors_are_clear() -> None:
    with pytest.raises(AudioFormatError, match="not a readable PCM WAV"):
        read_wav(b"definitely not a wav file")


def test_rms() -> None:
    assert pcm16_rms(b"") == 0.0
    assert pcm16_rms(silence(20)) == 0.0
    assert 3400 < pcm16_rms(tone(100, amplitude=5000)) < 3700  # 5000 / sqrt(2)


def test_resample_changes_length_by_the_rate_ratio() -> None:
    src, dst = AudioFormat(24000), AudioFormat(16000)
    out = resample(tone(1000, src), src, dst)
    assert abs(len(out) - dst.bytes_for(1000)) <= 4
    assert 3000 < pcm16_rms(out[1000:-1000]) < 3900  # the tone survives


def test_streaming_resampler_matches_whole_buffer() -> None:
    src, dst = AudioFormat(24000), AudioFormat(16000)
    pcm = tone(500, src)
    streamed = Resampler(src, dst)
    pieces = [streamed.process(chunk) for chunk in chunk_pcm(pcm, src, 30)]
    out = b"".join(pieces) + streamed.flush()
    whole = resample(pcm, src, dst)
    assert len(out) == len(whole)
    diff = np.abs(np.frombuffer(out, "<i2").astype(int) - np.frombuffer(whole, "<i2"))
    assert diff.max() <= 2  # the same signal, up to rounding


def test_identity_resampler_is_free_and_downmix_works() -> None:
    fmt = AudioFormat(16000)
    pcm = tone(40)
    assert Resampler(fmt, fmt).process(pcm) is pcm
    stereo = AudioFormat(16000, 2)
    assert to_mono(tone(40, stereo), stereo) == pcm
    assert resample(tone(40, stereo), stereo, fmt) == pcm
