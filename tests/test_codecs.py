"""voicepipe.codecs: round trips on real encoded audio, streams cut anywhere, clear errors."""

from __future__ import annotations

import itertools
import os

import numpy as np
import pytest

from tests.codec_support import browser_webm, firefox_ogg, mp3, peak_hz, rms, safari_mp4
from tests.support import silence, tone
from voicepipe.audio import AudioFormat
from voicepipe.codecs import (
    CodecError,
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
from voicepipe.codecs.container import ContainerDecoder, decode_clip
from voicepipe.codecs.g711 import alaw_to_pcm, mulaw_to_pcm, pcm_to_alaw, pcm_to_mulaw

RATE = 16000
SPEECH = tone(400, hz=440) + silence(100) + tone(300, hz=440)


def stream_decode(name: str, data: bytes, cuts: list[int]) -> bytes:
    """Decode ``data`` fed in the pieces that ``cuts`` (sorted offsets) make."""
    decoder = open_decoder(name, RATE)
    bounds = [0, *cuts, len(data)]
    out = b"".join(decoder.decode(data[a:b]) for a, b in itertools.pairwise(bounds))
    return out + decoder.flush()


# -- sniffing and names ------------------------------------------------------------


def test_sniff_recognises_each_recorders_container() -> None:
    pcm = tone(200)
    assert sniff(browser_webm(pcm)) == "webm"
    assert sniff(firefox_ogg(pcm)) == "ogg"
    assert sniff(safari_mp4(pcm)) == "mp4"
    assert sniff(mp3(pcm)) == "mp3"
    assert sniff(pcm) is None
    assert sniff(b"") is None


def test_unknown_codec_names_list_the_known_ones() -> None:
    with pytest.raises(CodecError, match="use one of pcm16, webm, ogg, mp4"):
        input_codec("flac")
    with pytest.raises(CodecError, match="use one of pcm16, mp3, opus"):
        output_codec("aac")
    assert input_codec("mulaw") == "mulaw"


# -- containers in ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "make"),
    [("webm", browser_webm), ("ogg", firefox_ogg), ("mp4", safari_mp4)],
)
def test_container_round_trip_keeps_the_tone(name: str, make: object) -> None:
    encoded = make(SPEECH)  # type: ignore[operator]
    pcm = decode_clip(encoded, RATE)
    assert abs(len(pcm) - len(SPEECH)) <= RATE * 2 * 0.1  # codec padding only
    assert peak_hz(pcm, RATE) == pytest.approx(440, abs=5)
    assert rms(pcm) == pytest.approx(rms(SPEECH), rel=0.2)
    streamed = stream_decode(name, encoded, list(range(97, len(encoded), 97)))
    assert streamed == pcm  # streamed in pieces == decoded whole


def test_mp3_streams_the_same_however_it_is_cut() -> None:
    encoded = mp3(SPEECH)
    whole = stream_decode("mp3", encoded, [])
    assert stream_decode("mp3", encoded, list(range(50, len(encoded), 50))) == whole
    assert peak_hz(whole, RATE) == pytest.approx(440, abs=5)


def test_webm_cut_at_every_byte_boundary_decodes_to_the_same_pcm() -> None:
    encoded = browser_webm(tone(240, hz=440), bit_rate=12000)
    whole = decode_clip(encoded, RATE)
    assert len(whole) > 0
    for cut in range(1, len(encoded)):
        assert stream_decode("webm", encoded, [cut]) == whole, f"cut at byte {cut}"


def test_webm_fed_one_byte_at_a_time_decodes_to_the_same_pcm() -> None:
    encoded = browser_webm(tone(300, hz=440))
    assert stream_decode("webm", encoded, list(range(1, len(encoded)))) == decode_clip(encoded)


def test_each_piece_returns_all_the_audio_it_completes() -> None:
    """Bounded latency: after each Cluster, the stream has given what a whole-clip decode gives."""
    encoded = browser_webm(tone(1000, hz=440))
    starts = [i for i in range(4, len(encoded)) if encoded[i : i + 4] == b"\x1f\x43\xb6\x75"]
    assert len(starts) >= 3
    decoder = ContainerDecoder("webm", RATE)
    done, previous = 0, 0
    for start in [*starts[1:], len(encoded)]:
        done += len(decoder.decode(encoded[previous:start])) // 2
        previous = start
        prefix = len(decode_clip(encoded[:start], RATE)) // 2
        assert prefix - done <= RATE * 2 // 1000  # at most 2 ms held back (the resampler's)
    decoder.flush()


@pytest.mark.anyio
async def test_decoding_runs_off_the_event_loop() -> None:
    encoded = browser_webm(SPEECH)
    decoder = open_decoder("webm", RATE)
    assert decoder.threaded
    out = b""
    for start in range(0, len(encoded), 1000):
        out += await decode(decoder, encoded[start : start + 1000])
    out += await finish(decoder)
    assert out == decode_clip(encoded, RATE)


def test_a_decoder_can_be_closed_midway() -> None:
    encoded = browser_webm(SPEECH)
    decoder = open_decoder("webm", RATE)
    decoder.decode(encoded[: len(encoded) // 2])
    decoder.close()  # the thread ends; nothing raises


@pytest.mark.parametrize("name", ["webm", "ogg", "mp4"])
@pytest.mark.parametrize(
    "garbage", [b"hello, this is not audio" * 20, os.urandom(4000), bytes(4000), tone(100)]
)
def test_garbage_is_refused_naming_what_was_expected(name: str, garbage: bytes) -> None:
    decoder = open_decoder(name, RATE)
    label = {"webm": "a WebM", "ogg": "an Ogg", "mp4": "an MP4"}[name]
    with pytest.raises(CodecError, match=f"expected {label} stream"):
        for start in range(0, len(garbage), 100):
            decoder.decode(garbage[start : start + 100])
        decoder.flush()
    decoder.close()


def test_the_wrong_container_is_named() -> None:
    with pytest.raises(CodecError, match=r"expected a WebM stream .* got an Ogg stream"):
        open_decoder("webm").decode(firefox_ogg(tone(100)))


@pytest.mark.parametrize("keep", [10, 100, 300])
def test_a_truncated_stream_ends_with_an_error_saying_so(keep: int) -> None:
    decoder = open_decoder("webm", RATE)
    decoder.decode(browser_webm(SPEECH)[:keep])
    with pytest.raises(CodecError, match=f"ended after {keep} bytes without any audio"):
        decoder.flush()


def test_a_stream_cut_mid_audio_keeps_what_came_whole() -> None:
    encoded = browser_webm(SPEECH)
    out = stream_decode("webm", encoded[: len(encoded) * 2 // 3], [500])
    assert 0 < len(out) < len(decode_clip(encoded))


def test_clips_that_are_not_audio_are_refused() -> None:
    with pytest.raises(CodecError, match="not a recognised audio container; expected one of: WebM"):
        decode_clip(b"RIFF....WAVEfmt ")
    with pytest.raises(CodecError, match="could not decode the clip as a WebM stream"):
        decode_clip(b"\x1a\x45\xdf\xa3" + os.urandom(100))


def test_a_whole_non_fragmented_mp4_clip_decodes() -> None:
    from tests.codec_support import encode as make

    clip = make(SPEECH, RATE, "mp4", "aac", bit_rate=64000)
    assert peak_hz(decode_clip(clip, RATE), RATE) == pytest.approx(440, abs=5)
    with pytest.raises(CodecError, match="must be fragmented"):
        stream_decode("mp4", clip, list(range(100, len(clip), 100)))


# -- G.711 ----------------------------------------------------------------------------


def test_g711_known_codes() -> None:
    assert pcm_to_mulaw(bytes(2)) == b"\xff"  # silence
    assert pcm_to_alaw(bytes(2)) == b"\xd5"
    assert mulaw_to_pcm(b"\xff\x7f\x00\x80") == np.array([0, 0, -32124, 32124], "<i2").tobytes()
    assert alaw_to_pcm(b"\xd5\x55\x2a\xaa") == np.array([8, -8, -32256, 32256], "<i2").tobytes()


@pytest.mark.parametrize(
    ("encode_", "decode_"), [(pcm_to_mulaw, mulaw_to_pcm), (pcm_to_alaw, alaw_to_pcm)]
)
def test_g711_round_trip_error_is_within_one_step(encode_: object, decode_: object) -> None:
    x = np.arange(-32768, 32768, 7, dtype="<i2")
    y = np.frombuffer(decode_(encode_(x.tobytes())), dtype="<i2").astype(np.int32)  # type: ignore[operator]
    error = np.abs(y - x.astype(np.int32))
    assert np.all(error <= np.maximum(np.abs(x.astype(np.int32)) // 16, 16) + 16)


@pytest.mark.parametrize("law", ["mulaw", "alaw"])
def test_g711_streams_resample_to_and_from_8khz(law: str) -> None:
    encoder = open_encoder(law, AudioFormat(RATE))
    coded = b"".join(encoder.encode(c) for c in (SPEECH[:3200], SPEECH[3200:])) + encoder.flush()
    assert len(coded) == pytest.approx(len(SPEECH) // 4, abs=8)  # 8 kHz, one byte a sample
    decoder = open_decoder(law, RATE)
    pcm = b"".join(decoder.decode(coded[i : i + 160]) for i in range(0, len(coded), 160))
    pcm += decoder.flush()
    assert len(pcm) == pytest.approx(len(SPEECH), abs=32)
    assert peak_hz(pcm, RATE) == pytest.approx(440, abs=5)
    assert rms(pcm) == pytest.approx(rms(SPEECH), rel=0.1)


# -- encoders -------------------------------------------------------------------------


@pytest.mark.parametrize("source_rate", [16000, 24000, 22050])
def test_mp3_replies_are_bare_frames_that_decode_back(source_rate: int) -> None:
    fmt = AudioFormat(source_rate)
    reply = tone(700, fmt, hz=440)
    encoder = open_encoder("mp3", fmt)
    assert encoder.content_type == "audio/mpeg"
    first = b"".join(encoder.encode(reply[i : i + 960]) for i in range(0, len(reply), 960))
    tail = encoder.flush()
    assert tail  # LAME held the end of the reply until flush
    out = first + tail
    assert out[0] == 0xFF and out[1] & 0xE0 == 0xE0  # no ID3 header: MediaSource takes it
    again = encoder.encode(reply) + encoder.flush()  # the next reply: a new MP3 stream
    assert len(again) == pytest.approx(len(out), rel=0.1)
    pcm = decode_clip(out + again, RATE)
    assert len(pcm) / (2 * RATE) == pytest.approx(1.4, abs=0.2)  # both replies, whole
    assert peak_hz(pcm, RATE) == pytest.approx(440, abs=5)


@pytest.mark.parametrize(("name", "signature"), [("opus", b"\x1a\x45\xdf\xa3"), ("ogg", b"OggS")])
def test_opus_replies_flush_everything_and_decode_back(name: str, signature: bytes) -> None:
    fmt = AudioFormat(24000)
    reply = tone(500, fmt, hz=440)
    encoder = open_encoder(name, fmt)
    out = encoder.encode(reply) + encoder.flush()
    assert out.startswith(signature)
    pcm = decode_clip(out, RATE)
    assert len(pcm) / (2 * RATE) == pytest.approx(0.5, abs=0.01)  # nothing stuck in the encoder
    assert peak_hz(pcm, RATE) == pytest.approx(440, abs=5)
    second = encoder.encode(reply) + encoder.flush()
    assert second.startswith(signature)  # each reply is its own stream
    assert len(decode_clip(second, RATE)) == len(pcm)


@pytest.mark.anyio
async def test_encoders_run_off_the_event_loop() -> None:
    encoder = open_encoder("mp3", AudioFormat(24000))
    assert encoder.threaded
    out = await encode(encoder, tone(300, AudioFormat(24000)))
    out += await end_reply(encoder)
    assert decode_clip(out, RATE)


def test_pcm16_needs_no_codec() -> None:
    with pytest.raises(CodecError, match="needs no decoder"):
        open_decoder("pcm16")
    with pytest.raises(CodecError, match="needs no encoder"):
        open_encoder("pcm16", AudioFormat())
