"""The JSGF grammars of ``sphinx_grammars``, checked by PocketSphinx itself: which
answers each grammar accepts (``FsgModel.accept``), without audio.

The e-mail grammar's readings that used to be wrong ("a n anna", "s a r eight h",
"at edu dot com") are ones it must not be able to produce at all.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from voicepipe.providers.base import STTHint
from voicepipe.providers.local.sphinx_grammars import grammar_for
from voicepipe.providers.local.sphinx_names import FIRST_NAMES, SURNAMES

pocketsphinx = pytest.importorskip("pocketsphinx", reason="PocketSphinx is not installed")

CORPUS = Path(__file__).parent.parent / "benchmarks" / "forms" / "corpus.json"


@pytest.fixture(scope="module")
def decoder() -> Any:
    return pocketsphinx.Decoder(samprate=16000, loglevel="FATAL")


_FSG: dict[str, Any] = {}


def accepts(decoder: Any, hint: STTHint, sentence: str) -> bool:
    grammar = grammar_for(hint, decoder.lookup_word)
    assert grammar is not None
    if grammar not in _FSG:
        _FSG[grammar] = decoder.parse_jsgf(grammar)
    return bool(_FSG[grammar].accept(sentence))


@pytest.mark.parametrize(
    "sentence",
    [
        "john at gmail dot com",
        "my email is peter at hotmail dot com",
        "a n n a at hotmail dot com",
        "j smith at gmail dot com",
        "mike moore at yahoo dot com all one word",
        "it's sarah twenty two at gmail dot com",
        "paul underscore miller at outlook dot com",
        "david dash taylor at example dot org",
        "k e n j i at mail dot uk",
        "yes john at gmail dot com",
        "no s a r a h at gmail dot com",
    ],
)
def test_the_email_grammar_takes_addresses_as_people_say_them(decoder: Any, sentence: str) -> None:
    assert accepts(decoder, STTHint("email"), sentence)


@pytest.mark.parametrize(
    "sentence",
    [
        "a n anna at hotmail dot com",  # spelled letters run into a name
        "mike a at yahoo dot com",  # a letter after a name
        "s a r eight h at gmail dot com",  # a digit inside a spelled run
        "mike moore at edu dot com",  # a top-level domain as the host
        "john at gmail",  # no top-level domain
        "at gmail dot com",  # no name
    ],
)
def test_the_email_grammar_cannot_produce_the_readings_it_used_to_mishear(
    decoder: Any, sentence: str
) -> None:
    assert not accepts(decoder, STTHint("email"), sentence)


def test_the_phone_grammar_takes_digits_and_groups(decoder: Any) -> None:
    phone = STTHint("phone")
    assert accepts(decoder, phone, "two one two double five five zero two three seven")
    assert accepts(decoder, phone, "my number is plus one four one five triple five oh one")
    assert not accepts(decoder, phone, "john at gmail dot com")


def test_the_name_list_is_general_and_holds_none_of_the_benchmarks_held_out_names() -> None:
    """The e-mail grammar's names come from a general list (Faker's en_US: SSA and
    Census frequency lists), not from the benchmark; its held-out answers use names
    that are in no list, so their figure is what an unknown name gets."""
    names = set(FIRST_NAMES) | set(SURNAMES)
    assert len(FIRST_NAMES) == 690 and len(SURNAMES) == 1000
    assert FIRST_NAMES[:3] == ["michael", "david", "james"]  # most frequent first
    assert SURNAMES[:3] == ["smith", "johnson", "williams"]
    corpus = json.loads(CORPUS.read_text())
    held_out = [item for item in corpus if item.get("held_out")]
    assert len(held_out) >= 12
    for item in held_out:
        assert not names & set(item["text"].split()), item
    said = {word for item in corpus if item["field"] == "email" for word in item["text"].split()}
    assert {"john", "mary", "brown", "miller"} <= said & names  # the others are common names


def test_of_names_that_sound_alike_the_email_grammar_keeps_the_commoner(decoder: Any) -> None:
    email = STTHint("email")
    assert accepts(decoder, email, "mary dot reed at yahoo dot com")
    assert not accepts(decoder, email, "mary dot reid at yahoo dot com")  # R IY D too
    assert accepts(decoder, email, "john at gmail dot com")
    assert not accepts(decoder, email, "jon at gmail dot com")
    assert accepts(decoder, email, "j smith at gmail dot com")
    assert not accepts(decoder, email, "jay smith at gmail dot com")  # the letter j


def test_the_date_grammar_takes_dates_as_people_say_them(decoder: Any) -> None:
    date = STTHint("date")
    for said in (
        "june thirteen nineteen hundred eighty six",
        "the twenty third of december nineteen eighty six",
        "i was born on february seventeenth two thousand and one",
        "march third",
        "no july nineteenth nineteen ninety",
    ):
        assert accepts(decoder, date, said), said
    for said in ("g thirteen nineteen eighty six", "fifty two", "june thirty second"):
        assert not accepts(decoder, date, said), said


def test_the_number_grammar_takes_amounts_and_ages_as_people_say_them(decoder: Any) -> None:
    number = STTHint("number")
    for said in (
        "i'm eighty eight",
        "i am one hundred and five",
        "forty one years old",
        "um sixty one",
        "two thousand three hundred",
        "seven five",
        "zero",
        "no i'm thirty four",
    ):
        assert accepts(decoder, number, said), said
    for said in ("i maybe they", "eighty eighty", "june third", "hundred hundred"):
        assert not accepts(decoder, number, said), said
