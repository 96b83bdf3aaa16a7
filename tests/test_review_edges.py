"""Adversarial review of the edges (codecs, forms, providers, CLI): each test here
reproduces a bug found by review and asserts what the fix guarantees."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytest

from tests.codec_support import safari_mp4
from tests.support import tone
from voicepipe.codecs import CodecError, open_decoder
from voicepipe.codecs.container import MAX_PIECE_SECONDS, decode_clip

av: Any = pytest.importorskip("av")

RATE = 16000

# -- codecs ---------------------------------------------------------------------------


def opus_bomb(container: str, seconds: float) -> bytes:
    """A valid Ogg or WebM Opus stream of 2-byte packets, each 120 ms of silence.

    Each packet is a code-3 Opus packet (TOC ``0x0b``: SILK, 20 ms frames) holding six
    empty frames, which the decoder conceals as 120 ms of audio: about 3 bytes of Ogg
    decode to 3,840 bytes of 16 kHz PCM16.
    """
    buffer = io.BytesIO()
    with av.open(buffer, "w", format=container) as out:
        stream = out.add_stream("libopus", rate=48000, layout="mono")
        frame = av.AudioFrame.from_ndarray(
            np.zeros((1, 960), dtype="<i2"), format="s16", layout="mono"
        )
        frame.sample_rate = 48000
        frame.pts = 0
        real = [*stream.encode(frame), *stream.encode(None)]
        for packet in real:
            out.mux(packet)
        base = real[0].time_base
        step = int(0.12 / base)
        for index in range(int(seconds / 0.12) + 1):
            packet = av.Packet(b"\x0b\x06")
            packet.stream = stream
            packet.time_base = base
            packet.pts = packet.dts = (index + 10) * step
            out.mux(packet)
    return buffer.getvalue()


@pytest.mark.parametrize("container", ["ogg", "webm"])
def test_a_few_kilobytes_that_decode_to_hours_of_audio_are_refused_not_held(
    container: str,
) -> None:
    bomb = opus_bomb(container, MAX_PIECE_SECONDS * 1.2)
    assert len(bomb) < 200_000  # what one WebSocket frame may carry
    decoder = open_decoder(container, RATE)
    with pytest.raises(CodecError, match=f"more than {MAX_PIECE_SECONDS:g} s of audio"):
        decoder.decode(bomb)
    decoder.close()
    with pytest.raises(CodecError, match=f"more than {MAX_PIECE_SECONDS:g} s of audio"):
        decode_clip(bomb, RATE)


def test_bytes_after_the_end_of_a_stream_are_refused_not_held() -> None:
    decoder = open_decoder("mp4", RATE)
    assert decoder.decode(safari_mp4(tone(500)))
    decoder.decode(bytes(10_000))  # the MP4 demuxer ends its stream here
    with pytest.raises(CodecError, match=r"the MP4 stream ended after \d+ bytes"):
        for _ in range(5):
            decoder.decode(bytes(10_000))
    decoder.close()
