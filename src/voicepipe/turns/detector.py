"""End-of-turn detection: is what the caller said so far a finished turn?

The STT ends a turn after a fixed silence. People pause mid-thought ("my
number is five five five ... one two three four", "a table for ... four"),
so the pipeline asks a :class:`TurnDetector` before answering: a finished
turn goes to the policy at once, an unfinished one is held a little longer
(bounded) in case the caller carries on.

:class:`LocalTurnDetector` is the built-in one: word lists and a few rules,
microseconds a decision, no model, no download. A model-based detector
plugs in by implementing :class:`TurnDetector`.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from voicepipe.turns.words import DIGITS, FILLERS, OPEN_ENDINGS, words_for

__all__ = ["LocalTurnDetector", "TurnDecision", "TurnDetector", "tokens"]

_TOKEN = re.compile(r"[^\W_]+(?:['’][^\W_]+)*")
_DOMAIN_END = re.compile(r"(?:\.|\bdot\s+|\bpunto\s+)[a-z]{2,}\s*[.!?]?\s*$")
_OPEN_PUNCTUATION = (",", "...", "…", "-", "–", ":", ";")


def tokens(text: str) -> list[str]:
    """Lower-case words of ``text``, hyphens split, punctuation dropped (apostrophes kept)."""
    return _TOKEN.findall(text.lower().replace("’", "'"))


@dataclass(frozen=True, slots=True)
class TurnDecision:
    """A detector's verdict: ``wait`` seconds more for speech (0: the turn is over).

    ``reason`` names the rule ("complete", "open_ending", "filler", "digits",
    "trailing_punctuation", "expecting_phone", "expecting_email"), for
    metrics and debugging.
    """

    wait: float
    reason: str = "complete"

    @property
    def complete(self) -> bool:
        return self.wait <= 0


@runtime_checkable
class TurnDetector(Protocol):
    """Decides whether the caller's turn is over once the STT ends it."""

    async def decide(self, text: str, *, expecting: str | None = None) -> TurnDecision:
        """Judge ``text`` (the whole turn so far); ``expecting`` is the policy's
        hint of what the answer should hold (``"phone"``, ``"email"``, ...)."""
        ...


class LocalTurnDetector:
    """Rules over the turn's last words: fast, local, no download.

    The turn is unfinished (wait ``unfinished_wait`` seconds) when it ends
    with a conjunction, article or preposition ("and", "the", "for", "my
    email is"), a filler ("um", "o sea"), trailing punctuation (a comma, an
    ellipsis) or an open run of spoken digits (fewer than ``min_digits``).
    When the policy expects a phone number or an e-mail address, the bar
    rises: a phone number with fewer than ``phone_digits`` digits or an
    address without a domain waits ``expecting_wait``, and so does any open
    ending while the policy expects one of ``patient_for`` (values people
    dictate in pieces; a yes/no or a choice is not among them). No wait
    exceeds ``max_wait``. ``languages`` picks the word lists (see
    :mod:`voicepipe.turns.words`).
    """

    def __init__(
        self,
        *,
        languages: Sequence[str] = ("en", "es"),
        unfinished_wait: float = 0.8,
        expecting_wait: float = 1.5,
        max_wait: float = 2.0,
        min_digits: int = 7,
        phone_digits: int = 9,
        patient_for: Collection[str] = ("phone", "email", "number", "date", "address"),
    ) -> None:
        if min(unfinished_wait, expecting_wait, max_wait) < 0:
            raise ValueError("waits must not be negative")
        self.languages = tuple(languages)
        self.unfinished_wait = min(unfinished_wait, max_wait)
        self.expecting_wait = min(max(expecting_wait, unfinished_wait), max_wait)
        self.max_wait = max_wait
        self.min_digits = min_digits
        self.phone_digits = phone_digits
        self.patient_for = frozenset(patient_for)
        self._open, self._fillers, self._digits, self._longest = _word_lists(self.languages)

    async def decide(self, text: str, *, expecting: str | None = None) -> TurnDecision:
        return self.judge(text, expecting=expecting)

    def judge(self, text: str, *, expecting: str | None = None) -> TurnDecision:
        """The synchronous verdict (what :meth:`decide` returns)."""
        words = tokens(text)
        if not words:
            return TurnDecision(0.0)
        if expecting in ("phone", "email") and _answers_read_back(words):
            expecting = None  # "yes" or "no" to a read-back of one: nothing more is coming
        if expecting == "phone":
            digits = _count(w for w in words if self._is_digit(w))
            if digits and digits < self.phone_digits and self._digit_run(words):
                return TurnDecision(self.expecting_wait, "expecting_phone")
        elif expecting == "email" and not _DOMAIN_END.search(text.lower()):
            return TurnDecision(self.expecting_wait, "expecting_email")
        wait = self.expecting_wait if expecting in self.patient_for else self.unfinished_wait
        ending = self._open_ending(words)
        if ending:
            return TurnDecision(wait, ending)
        if text.rstrip().endswith(_OPEN_PUNCTUATION):
            return TurnDecision(wait, "trailing_punctuation")
        run = self._digit_run(words)
        spoken = sum(1 for w in run if not w.isdigit())
        if spoken >= 2 and _count(run) < self.min_digits:
            return TurnDecision(wait, "digits")
        return TurnDecision(0.0)

    def _open_ending(self, words: list[str]) -> str | None:
        for size in range(min(self._longest, len(words)), 0, -1):
            tail = " ".join(words[-size:])
            if tail in self._fillers:
                return "filler"
            if tail in self._open:
                return "open_ending"
        return None

    def _is_digit(self, word: str) -> bool:
        return word.isdigit() or word in self._digits

    def _digit_run(self, words: list[str]) -> list[str]:
        """The digits (spoken or numerals) the text ends with."""
        start = len(words)
        while start and self._is_digit(words[start - 1]):
            start -= 1
        return words[start:]


@functools.lru_cache(maxsize=64)
def _word_lists(
    languages: tuple[str, ...],
) -> tuple[frozenset[str], frozenset[str], frozenset[str], int]:
    """The detector's word lists for ``languages``, built once (a detector is made per session)."""
    open_endings = words_for(OPEN_ENDINGS, languages)
    fillers = words_for(FILLERS, languages)
    digits = words_for(DIGITS, languages) - {"o", "oh", "u", "una"}
    longest = max(len(p.split()) for p in open_endings | fillers)
    return open_endings, fillers, digits, longest


# Whole turns that answer a read-back: not the start of a number or an address. Narrow on
# purpose: "okay" or "sure" often come before the digits ("sure... four one five").
# fmt: off
_READ_BACK_REPLIES = frozenset(
    [
        "yes", "yeah", "yep", "yup", "correct", "that's right", "that's correct",
        "that is correct", "exactly", "yes that's right", "yes it is",
        "no", "nope", "nah", "no no", "wrong", "incorrect", "that's wrong",
        "sí", "si", "correcto", "exacto", "eso es", "sí es correcto", "incorrecto",
        "no es correcto",
    ]
)
# Words a read-back reply is made of when it is not a phrase above ("yes please", "no no
# no", "uh yes", "sí sí"): none of them starts a number or an address ("oh" is a zero).
_READ_BACK_WORDS = frozenset(
    ["yes", "yeah", "yep", "yup", "correct", "exactly", "right", "please", "no", "nope", "nah",
     "wrong", "incorrect", "uh", "um", "sí", "si", "correcto", "exacto", "incorrecto"]
)
_FILLERS = frozenset(["uh", "um", "please"])
# fmt: on


def _answers_read_back(words: list[str]) -> bool:
    """True when the whole turn is a yes or no (possibly repeated or with "uh", "please")."""
    if " ".join(words) in _READ_BACK_REPLIES:
        return True
    return _READ_BACK_WORDS.issuperset(words) and not _FILLERS.issuperset(words)


def _count(digits: Iterable[str]) -> int:
    """How many digits: a numeral counts its length, a spoken digit one."""
    return sum(len(w) if w.isdigit() else 1 for w in digits)
