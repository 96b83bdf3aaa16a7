"""What the codecs cost: CPU µs per second of audio, and the delay a streaming decoder adds.

For each decoder and encoder in ``voicepipe.codecs`` it codes ``--seconds``
of speech-like audio (a gliding tone with pauses) in 20 ms (PCM) or 250 ms
(MediaRecorder-like) pieces and reports process CPU time (all threads) per
second of audio, best of ``--repeat`` runs. Decoders produce PCM16 16 kHz;
encoders take PCM16 at 24 kHz (a TTS's rate). It also reports the **added
delay** of streaming WebM decoding: after each 250 ms piece, how much audio
the pieces so far hold that the decoder has not yet returned (max over the
stream). CPU time is what to compare on a shared machine; wall time is not.

Run: ``python benchmarks/bench_codecs.py`` (``--seconds 2`` for a smoke run).
"""

from __future__ import annotations

import argparse
import io
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from voicepipe.audio import AudioFormat
from voicepipe.codecs import open_decoder, open_encoder
from voicepipe.codecs.container import decode_clip

RATE = 16000
TTS = AudioFormat(24000)


def speech(seconds: float, rate: int) -> bytes:
    """A gliding tone, 700 ms on and 300 ms off: enough like speech for a codec's cost."""
    t = np.arange(int(seconds * rate)) / rate
    wave = np.sin(2 * np.pi * (200 + 100 * np.sin(2 * np.pi * 0.5 * t)) * t) * 6000
    wave[(t % 1.0) > 0.7] = 0
    return wave.astype("<i2").tobytes()


def recorded(pcm: bytes, container: str, codec: str, **opts: Any) -> bytes:
    """What a browser would send: ``pcm`` (16 kHz) encoded in ``container``."""
    import av

    av_: Any = av
    buffer = io.BytesIO()
    with av_.open(buffer, "w", format=container, options=opts.pop("options", {})) as out:
        stream = out.add_stream(codec, rate=48000 if codec == "libopus" else RATE, layout="mono")
        stream.bit_rate = opts.pop("bit_rate", 128000)
        stream.options = opts.pop("codec_options", {})
        frame = av_.AudioFrame.from_ndarray(
            np.frombuffer(pcm, "<i2").reshape(1, -1), format="s16", layout="mono"
        )
        frame.sample_rate, frame.pts = RATE, 0
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            out.mux(packet)
    return buffer.getvalue()


def cpu_us_per_second(work: Callable[[], None], seconds: float, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.process_time()
        work()
        best = min(best, time.process_time() - start)
    return best / seconds * 1e6


def decoding(name: str, data: bytes, piece: int) -> Callable[[], None]:
    def work() -> None:
        decoder = open_decoder(name, RATE)
        for start in range(0, len(data), piece):
            decoder.decode(data[start : start + piece])
        decoder.flush()

    return work


def encoding(name: str, pcm: bytes, piece: int) -> Callable[[], None]:
    def work() -> None:
        encoder = open_encoder(name, TTS)
        for start in range(0, len(pcm), piece):
            encoder.encode(pcm[start : start + piece])
        encoder.flush()

    return work


def encoded_size(name: str, pcm: bytes) -> int:
    """Bytes ``name`` makes of ``pcm`` (24 kHz), as replies of ~3 s each."""
    encoder = open_encoder(name, TTS)
    reply = TTS.bytes_for(3000)
    return sum(
        len(encoder.encode(pcm[i : i + reply]) + encoder.flush()) for i in range(0, len(pcm), reply)
    )


def added_delay_ms(data: bytes, pieces: int) -> float:
    """Worst audio held back after a piece: whole-clip decode of the prefix minus streamed."""
    decoder = open_decoder("webm", RATE)
    step = max(1, len(data) // pieces)
    streamed, worst = 0, 0.0
    for end in range(step, len(data) + step, step):
        streamed += len(decoder.decode(data[end - step : end])) // 2
        try:
            whole = len(decode_clip(data[:end], RATE)) // 2
        except Exception:
            continue  # the prefix holds no whole packet yet
        worst = max(worst, (whole - streamed) / RATE * 1000)
    decoder.flush()
    return worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    seconds, repeat = args.seconds, args.repeat
    pcm16 = speech(seconds, RATE)
    pcm24 = speech(seconds, TTS.sample_rate)
    webm = recorded(
        pcm16,
        "webm",
        "libopus",
        options={"live": "1", "cluster_time_limit": "250"},
        codec_options={"frame_duration": "60"},
    )
    ogg = recorded(pcm16, "ogg", "libopus")
    mp4 = recorded(
        pcm16, "mp4", "aac", bit_rate=64000, options={"movflags": "frag_keyframe+empty_moov"}
    )
    mulaw = open_encoder("mulaw", AudioFormat(RATE)).encode(pcm16)

    def per_250ms(data: bytes) -> int:
        return max(1, int(len(data) / seconds / 4))

    rows: list[tuple[str, float]] = [
        ("decode WebM/Opus 128 kbps (Chromium) -> 16 kHz, 250 ms pieces",
         cpu_us_per_second(decoding("webm", webm, per_250ms(webm)), seconds, repeat)),
        ("decode Ogg/Opus 128 kbps (Firefox) -> 16 kHz, 250 ms pieces",
         cpu_us_per_second(decoding("ogg", ogg, per_250ms(ogg)), seconds, repeat)),
        ("decode fMP4/AAC 64 kbps (Safari) -> 16 kHz, 250 ms pieces",
         cpu_us_per_second(decoding("mp4", mp4, per_250ms(mp4)), seconds, repeat)),
        ("decode mu-law 8 kHz -> 16 kHz, 20 ms pieces",
         cpu_us_per_second(decoding("mulaw", mulaw, 160), seconds, repeat)),
        ("encode 24 kHz -> MP3 48 kbps, 20 ms pieces",
         cpu_us_per_second(encoding("mp3", pcm24, 960), seconds, repeat)),
        ("encode 24 kHz -> Opus 32 kbps in WebM, 20 ms pieces",
         cpu_us_per_second(encoding("opus", pcm24, 960), seconds, repeat)),
        ("encode 24 kHz -> Opus 32 kbps in Ogg, 20 ms pieces",
         cpu_us_per_second(encoding("ogg", pcm24, 960), seconds, repeat)),
        ("encode 24 kHz -> mu-law 8 kHz, 20 ms pieces",
         cpu_us_per_second(encoding("mulaw", pcm24, 960), seconds, repeat)),
    ]  # fmt: skip
    print(f"voicepipe codecs: CPU per second of audio ({seconds:g} s, best of {repeat})")
    for label, us in rows:
        print(f"  {label:<62} {us:>9,.0f} us/s  ({us / 1e4:.2f}% of a core)")
    delay = added_delay_ms(webm[: len(webm) * 3 // max(1, int(seconds))], 12)
    print(f"  streaming WebM decode: audio held back after a piece, worst   {delay:>9.2f} ms")
    print("bandwidth per minute of audio (speech-like, 30% pauses)")
    minute = 60 / seconds
    for label, size in [
        ("PCM16 16 kHz (voicepipe's page, up)", len(pcm16)),
        ("PCM16 24 kHz (voicepipe's page, down)", len(pcm24)),
        ("WebM/Opus 128 kbps (MediaRecorder's default, up)", len(webm)),
        ("mu-law 8 kHz (phones, each way)", len(mulaw)),
        ("MP3 48 kbps (voicepipe's encoder, down)", encoded_size("mp3", pcm24)),
        ("Opus 32 kbps in WebM (voicepipe's encoder, down)", encoded_size("opus", pcm24)),
    ]:
        print(f"  {label:<62} {size * minute / 1e3:>9,.0f} KB/min")


if __name__ == "__main__":
    main()
