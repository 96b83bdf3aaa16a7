"""Adversarial review of the edges (codecs, forms, providers, CLI): each test here
reproduces a bug found by review and asserts what the fix guarantees."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import threading
from typing import Any

import numpy as np
import pytest

from tests.codec_support import browser_webm, safari_mp4
from tests.support import tone
from voicepipe.audio import AudioFormat
from voicepipe.codecs import CodecError, decode, open_decoder, open_encoder
from voicepipe.codecs.container import MAX_PIECE_SECONDS, MAX_SILENT_BYTES, decode_clip

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


def webm_declaring_a_huge_codec_private(size: int = 200_000_000) -> bytes:
    """A WebM header whose track's CodecPrivate declares ``size`` bytes (FFmpeg allows 256 MB)."""
    real = browser_webm(tone(100))
    tracks = real.index(bytes.fromhex("1654AE6B"))
    unknown = bytes.fromhex("01FFFFFFFFFFFFFF")  # an EBML size of "unknown"
    return (
        real[:tracks]
        + bytes.fromhex("1654AE6B")  # Tracks
        + unknown
        + bytes.fromhex("AE")  # TrackEntry
        + unknown
        + bytes.fromhex("63A2")  # CodecPrivate
        + b"\x01"
        + size.to_bytes(7, "big")
    )


@pytest.mark.parametrize(
    ("head", "filler"),
    [
        pytest.param(webm_declaring_a_huge_codec_private(), bytes(1 << 16), id="huge-element"),
        pytest.param(browser_webm(tone(100))[:300], b"\x42" * (1 << 16), id="header-then-junk"),
    ],
)
def test_a_stream_that_decodes_to_no_audio_is_refused_before_it_piles_up(
    head: bytes, filler: bytes
) -> None:
    decoder = open_decoder("webm", RATE)
    decoder.decode(head)
    fed = 0
    with pytest.raises(CodecError, match=r"decoded to no audio; expected a WebM stream"):
        while fed < 3 * MAX_SILENT_BYTES:
            decoder.decode(filler)
            fed += len(filler)
    assert fed <= MAX_SILENT_BYTES + len(filler)
    decoder.close()


def test_opening_a_decoder_or_encoder_leaves_pyav_to_import_off_the_event_loop() -> None:
    # `import av` takes 130-240 ms; a server opens codecs on its event loop, so the
    # first WebM session would stall every other session that long.
    code = (
        "import sys; from voicepipe.audio import AudioFormat\n"
        "from voicepipe.codecs import open_decoder, open_encoder\n"
        "open_decoder('webm'); open_encoder('mp3', AudioFormat(24000))\n"
        "open_encoder('opus', AudioFormat(24000))\n"
        "print('av' in sys.modules)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert result.stdout.strip() == "False"


@pytest.mark.anyio
@pytest.mark.parametrize("law", ["mulaw", "alaw"])
async def test_a_large_g711_piece_is_decoded_off_the_event_loop(law: str) -> None:
    # Found by review: G.711 is decoded inline as it is cheap for a 160-byte phone frame,
    # but a client may send a 1 MiB frame (35 ms of upsampling on a loaded machine,
    # a stall for every session on the loop).
    decoder = open_decoder(law, RATE)
    threads: list[threading.Thread] = []
    inner = decoder.decode

    def spy(data: bytes) -> bytes:
        threads.append(threading.current_thread())
        return inner(data)

    decoder.decode = spy  # type: ignore[method-assign]
    small = await decode(decoder, bytes(160))
    large = await decode(decoder, bytes(1 << 20))
    assert len(small) + len(large) > 2 * (160 + (1 << 20))  # upsampled to 16 kHz PCM16
    assert threads[0] is threading.main_thread()  # a phone frame: inline, cheap
    assert threads[1] is not threading.main_thread()


@pytest.mark.parametrize(
    ("open_codec", "task"),
    [
        (lambda: open_decoder("webm", RATE), "decoding WebM/Ogg/MP4/MP3"),
        (lambda: open_encoder("mp3", AudioFormat(24000)), "encoding MP3 or Opus"),
    ],
)
def test_a_codec_without_pyav_installed_says_which_extra_to_install(
    monkeypatch: pytest.MonkeyPatch, open_codec: Any, task: str
) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "av" else real(name, *a)
    )
    with pytest.raises(
        CodecError, match=rf"^{task} needs PyAV: pip install 'voicepipe\[codecs\]'$"
    ):
        open_codec()
