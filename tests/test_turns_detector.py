"""The built-in end-of-turn detector: which turns sound unfinished, and how long it waits."""

from __future__ import annotations

import pytest

from voicepipe.turns import LocalTurnDetector, TurnDecision, TurnDetector
from voicepipe.turns.detector import tokens
from voicepipe.turns.words import OPEN_ENDINGS, words_for

detector = LocalTurnDetector()


@pytest.mark.parametrize(
    "text",
    [
        "what time is it",
        "yes it is",
        "I am 42",
        "five five five one two three four",  # seven digits: a whole local number
        "the capital of France is Paris.",
        "thanks that's all bye",
        "qué tiempo hará mañana",
        "",
    ],
)
def test_finished_turns_are_not_held(text: str) -> None:
    decision = detector.judge(text)
    assert decision.complete and decision.wait == 0 and decision.reason == "complete"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("I would like a table for", "open_ending"),
        ("my email is", "open_ending"),
        ("bread and", "open_ending"),
        ("quiero una mesa para", "open_ending"),
        ("mi correo es", "open_ending"),
        ("I think I want um", "filler"),
        ("pues o sea", "filler"),
        ("let me see, the first one,", "trailing_punctuation"),
        ("my number is five five five", "digits"),
        ("es el seis uno dos", "digits"),
    ],
)
def test_unfinished_turns_wait_a_little(text: str, reason: str) -> None:
    decision = detector.judge(text)
    assert decision == TurnDecision(0.8, reason)
    assert not decision.complete


def test_a_phone_number_being_asked_for_raises_the_bar() -> None:
    assert detector.judge("five five five", expecting="phone") == TurnDecision(
        1.5, "expecting_phone"
    )
    assert detector.judge("six one two three four five six seven eight", expecting="phone").complete
    assert detector.judge("555 123 4567", expecting="phone").complete
    # Words that are not digits end the number: the caller moved on.
    assert detector.judge("five five five thanks", expecting="phone").complete


def test_an_email_address_being_asked_for_waits_for_its_domain() -> None:
    assert detector.judge("ana at example", expecting="email").reason == "expecting_email"
    assert detector.judge("ana at example dot", expecting="email").reason == "expecting_email"
    assert detector.judge("ana at example dot com", expecting="email").complete
    assert detector.judge("ana@example.com", expecting="email").complete


@pytest.mark.parametrize(
    "reply",
    [
        *("yes", "Yes.", "that's right", "no", "nope", "sí", "correcto"),
        *("yes yes", "uh yes", "yes please", "yes, correct", "no no no", "sí sí", "um no"),
    ],
)
@pytest.mark.parametrize("kind", ["phone", "email"])
def test_a_yes_or_no_to_a_read_back_ends_the_turn(reply: str, kind: str) -> None:
    # A read-back ("I have ... Is that right?") still expects the field's kind, since the
    # answer may be a correction; a bare yes or no is not the start of one.
    assert detector.judge(reply, expecting=kind) == TurnDecision(0.0)


def test_a_correction_to_a_read_back_still_waits_for_the_value() -> None:
    assert detector.judge("no it's ana at", expecting="email").reason == "expecting_email"
    assert detector.judge("no four one five", expecting="phone").reason == "expecting_phone"
    assert detector.judge("sure", expecting="email").reason == "expecting_email"
    assert detector.judge("yes please four one five", expecting="phone").reason == (
        "expecting_phone"
    )
    assert detector.judge("uh", expecting="phone").reason != "complete"
    assert detector.judge("please", expecting="email").reason == "expecting_email"


def test_values_dictated_in_pieces_lengthen_the_wait_on_open_endings() -> None:
    assert detector.judge("it is for", expecting="date") == TurnDecision(1.5, "open_ending")
    assert detector.judge("the one with", expecting="choice") == TurnDecision(0.8, "open_ending")
    assert detector.judge("yes", expecting="yes_no").complete


def test_waits_are_configurable_and_bounded() -> None:
    d = LocalTurnDetector(unfinished_wait=0.3, expecting_wait=5.0, max_wait=1.0)
    assert d.judge("a table for").wait == 0.3
    assert d.judge("five", expecting="phone").wait == 1.0
    with pytest.raises(ValueError, match="negative"):
        LocalTurnDetector(unfinished_wait=-1)


def test_languages_pick_the_word_lists() -> None:
    english = LocalTurnDetector(languages=["en"])
    assert english.judge("quiero una mesa para").complete  # Spanish words unknown
    with pytest.raises(ValueError, match=r"'xx'.*known: en, es"):
        LocalTurnDetector(languages=["xx"])


def test_tokens_drop_punctuation_and_split_hyphens() -> None:
    assert tokens("Uh-huh, it's FINE...") == ["uh", "huh", "it's", "fine"]
    assert all(p == " ".join(p.split()) for p in words_for(OPEN_ENDINGS, ["en", "es"]))


@pytest.mark.anyio
async def test_the_detector_meets_the_protocol() -> None:
    assert isinstance(detector, TurnDetector)
    assert await detector.decide("a table for") == detector.judge("a table for")
