"""PocketSphinx listening for what the form expects (``STTHint``): a grammar of the
expected answers, and no value invented from speech or noise that is not one.

The answers are spoken by the project's Piper voice into a temporary folder
(deterministic: the voice's noise is off), like ``examples/audio/make_samples.py``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from voicepipe.audio import AudioFormat, chunk_pcm, read_wav, resample
from voicepipe.events import UserTurn
from voicepipe.providers.base import Expectation, STTEvent, STTHint
from voicepipe.providers.local.sphinx_grammars import grammar_for, rival_for

pytest.importorskip("pocketsphinx", reason="PocketSphinx is not installed (the 'local' extra)")
pytest.importorskip("piper", reason="Piper is not installed (the 'local' extra)")

from voicepipe.providers.local import PiperTTS, PocketSphinxSTT

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

FORMAT = AudioFormat(sample_rate=16000, channels=1)
SAMPLES = Path(__file__).parent.parent / "examples" / "audio"
MEAL = STTHint("choice", ("vegetarian", "chicken", "fish"))
DATE = STTHint("date")
PHONE = STTHint("phone", confirmed=True)
# What the general model hears in these (measured): a phone's "two one two" as
# "to want to", "fish please" as "this please", "chicken" as "take it".
SPOKEN = {
    "phone": "two one two double five five zero two three seven",
    "fish": "fish please",
    "chicken": "chicken",
    # At the engine's own word insertion penalty the grammar heard "eight eight" here.
    "phone_eight": "two one two double five five eight zero nine six",
    # The general model hears "g thirteen nineteen hundred eighty six".
    "june": "june 13, 1986",
    # Under a choice hint, the grammar read it "my an um for chicken for thanks",
    # scoring above UNCONFIRMED_MARGIN.
    "my_number": "my number is six four six, five five five, one seven four two",
    # The general model hears "i maybe they".
    "age": "i'm 88",
}
SPEED = {"phone": 1.2}  # Piper's length_scale (1.0 otherwise)


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
async def spoken(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """Each of SPOKEN said by Piper, with the samples' silences around it."""
    out: dict[str, bytes] = {}
    for name, text in SPOKEN.items():
        tts = PiperTTS(noise_scale=0.0, noise_w_scale=0.0, length_scale=SPEED.get(name, 1.0))
        pcm = b"".join([chunk async for chunk in tts.synthesize(text)])
        speech = resample(pcm, tts.output_format, FORMAT)
        out[name] = bytes(FORMAT.bytes_for(300)) + speech + bytes(FORMAT.bytes_for(1200))
    return out


async def heard(pcm: bytes, hint: STTHint | None) -> list[str]:
    return (await heard_with_alternatives(pcm, hint))[0]


async def heard_with_alternatives(
    pcm: bytes, hint: STTHint | None
) -> tuple[list[str], list[tuple[str, ...]]]:
    """The turns heard in ``pcm``, and the other readings noted for each."""
    turns: list[str] = []
    expect = Expectation(hint)

    async def audio() -> AsyncIterator[bytes]:
        for chunk in chunk_pcm(pcm, FORMAT, 20):
            yield chunk

    async def emit(event: STTEvent) -> None:
        if isinstance(event, UserTurn):
            turns.append(event.content)

    await PocketSphinxSTT().transcribe_expecting(audio(), FORMAT, emit, expect)
    return turns, [expect.alternatives(turn) for turn in turns]


async def test_a_phone_number_is_heard_as_digits_while_a_phone_is_expected(
    spoken: dict[str, bytes],
) -> None:
    assert await heard(spoken["phone"], None) != [SPOKEN["phone"]]  # the general model
    assert await heard(spoken["phone"], PHONE) == [SPOKEN["phone"]]


async def test_a_phone_grammar_does_not_hear_a_held_digit_twice(
    spoken: dict[str, bytes],
) -> None:
    assert await heard(spoken["phone_eight"], PHONE) == [SPOKEN["phone_eight"]]


async def test_the_grammar_penalty_leaves_the_general_model_its_own(
    spoken: dict[str, bytes],
) -> None:
    """The grammar searches get GRAMMAR_WIP; the decoder's configuration (and the
    general search built from it) keeps the engine's penalty."""
    from voicepipe.providers.local import pocketsphinx as sphinx

    stt = PocketSphinxSTT()
    decoder = sphinx._checkout(stt._config)
    general = decoder.config["wip"]
    assert general != sphinx.GRAMMAR_WIP
    sphinx._checkin(stt._config, decoder)
    assert await heard(spoken["phone"], PHONE) == [SPOKEN["phone"]]
    assert await heard(spoken["fish"], None) == ["this please"]
    decoder = sphinx._checkout(stt._config)
    assert decoder.config["wip"] == general
    sphinx._checkin(stt._config, decoder)


async def test_a_date_is_heard_with_its_month_while_a_date_is_expected(
    spoken: dict[str, bytes],
) -> None:
    assert "june" not in (await heard(spoken["june"], None))[0]
    # Not read back: taken because it scores near the general model's own words.
    assert await heard(spoken["june"], DATE) == ["june thirteenth nineteen hundred eighty six"]


async def test_a_choice_is_heard_among_its_options(spoken: dict[str, bytes]) -> None:
    assert await heard(spoken["fish"], None) == ["this please"]
    assert await heard(spoken["fish"], MEAL) == ["fish please"]


async def test_speech_that_is_not_an_answer_keeps_its_general_transcript() -> None:
    pcm, fmt = read_wav(SAMPLES / "capital_of_france.wav")
    pcm = resample(pcm, fmt, FORMAT)
    general = await heard(pcm, None)
    assert general == ["what is the capital of france"]
    # Not read back: the grammar's forced reading must not replace it.
    assert await heard(pcm, MEAL) == general
    assert await heard(pcm, STTHint("phone", confirmed=False)) == general
    assert await heard(pcm, DATE) == general


async def test_a_phone_number_said_when_a_choice_is_asked_is_not_made_a_choice(
    spoken: dict[str, bytes],
) -> None:
    general = await heard(spoken["my_number"], None)
    assert "number" in general[0]
    assert await heard(spoken["my_number"], MEAL) == general


async def test_a_reading_that_fails_the_checks_is_passed_on_as_the_turns_alternative(
    spoken: dict[str, bytes],
) -> None:
    """Not taken (the value is not read back), but offered: a policy may ask "did you
    say chicken?" rather than ask again (``Expectation.note``)."""
    turns, alternatives = await heard_with_alternatives(spoken["chicken"], MEAL)
    assert turns != ["chicken"]
    assert alternatives == [("chicken",)]
    turns, alternatives = await heard_with_alternatives(spoken["age"], STTHint("number"))
    assert turns == ["i maybe they"]
    assert alternatives == [("i'm eighty eight",)]
    # Taken when it passes the checks: then there is no other reading.
    assert await heard_with_alternatives(spoken["fish"], MEAL) == (["fish please"], [()])


async def test_speech_that_is_no_answer_gets_no_alternative() -> None:
    pcm, fmt = read_wav(SAMPLES / "capital_of_france.wav")
    pcm = resample(pcm, fmt, FORMAT)
    for hint in (MEAL, STTHint("number"), DATE):
        turns, alternatives = await heard_with_alternatives(pcm, hint)
        assert (turns, alternatives) == (["what is the capital of france"], [()])


async def test_noise_stores_no_value() -> None:
    rng = np.random.default_rng(7)
    noise = (rng.normal(0, 3000, FORMAT.sample_rate)).astype("<i2").tobytes()
    pcm = bytes(FORMAT.bytes_for(300)) + noise + bytes(FORMAT.bytes_for(1200))
    months = {"january", "february", "march", "april", "may", "june", "july", "august"}
    months |= {"september", "october", "november", "december"}
    for hint in (MEAL, STTHint("phone", confirmed=False), DATE):
        said = " ".join(await heard(pcm, hint)).split()
        assert not {"vegetarian", "chicken", "fish"} & set(said)
        assert not months & set(said)
        assert sum(w in ("one", "two", "three", "four", "five", "six") for w in said) < 7


async def test_a_spanish_hint_uses_no_grammar(spoken: dict[str, bytes]) -> None:
    spanish = STTHint("choice", ("vegetarian", "chicken", "fish"), language="es")
    assert await heard(spoken["chicken"], spanish) == await heard(spoken["chicken"], None)


def test_grammars_only_for_kinds_and_words_the_engine_has() -> None:
    def known(word: str) -> str | None:
        return None if word == "quinoa" else " ".join(word.upper())  # a "pronunciation"

    assert grammar_for(STTHint("yes_no"), known) is None  # left to the general model
    number = grammar_for(STTHint("number"), known)
    assert number is not None
    assert "<after> = years | years old" in number
    assert grammar_for(STTHint("choice", ("quinoa", "fish")), known) is None
    choice = grammar_for(MEAL, known)
    assert choice is not None
    assert "<option> = chicken | fish | vegetarian;" in choice
    email = grammar_for(STTHint("email"), known)
    assert email is not None
    assert " at <domain>" in email
    assert rival_for("take him") is not None
    assert rival_for("eighty s. the") is None  # not a grammar word: no rival, keep the text
