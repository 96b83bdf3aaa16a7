"""A streaming sentence splitter, so TTS can start on a sentence as soon as it is complete.

LLM text arrives in small deltas. :class:`SentenceSplitter` cuts it into
pieces at sentence ends, deciding as early as it safely can: a ``.`` at the
end of the text so far ends a sentence unless the word before it could go on
(an abbreviation, an initial, a number that may be a decimal, an e-mail
address or URL in progress). Pieces keep every character, so joining all
pieces always gives back the input exactly; leading whitespace goes with the
next piece.
"""

from __future__ import annotations

import re

__all__ = ["SentenceSplitter", "split_sentences"]

ABBREVIATIONS = frozenset(
    {
        "mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "mt", "ft", "vs", "etc",
        "e.g", "i.e", "eg", "ie", "cf", "al", "inc", "ltd", "co", "corp", "dept",
        "approx", "est", "fig", "vol", "ch", "sec", "ave", "blvd", "rd", "apt",
        "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov",
        "dec", "a.m", "p.m", "u.s", "u.k", "ph.d",
    }
)  # fmt: skip

# A run of sentence punctuation, then any closing quotes or brackets.
_END = re.compile(r"[.!?…]+[\"'”’)\]]*")
_WORD_BEFORE = re.compile(r"(\S*)$")


class SentenceSplitter:
    """Feed text deltas with :meth:`push`; call :meth:`flush` at the end.

    ``max_chars`` bounds how long text without a sentence end is held back:
    past it, the text is cut at the last comma, semicolon, colon or space.
    """

    def __init__(self, *, max_chars: int = 250) -> None:
        self.max_chars = max_chars
        self._buffer = ""

    def push(self, delta: str) -> list[str]:
        """Add a delta; return the pieces completed by it (often none)."""
        self._buffer += delta
        pieces: list[str] = []
        while True:
            end = _boundary(self._buffer)
            if end is None and len(self._buffer) > self.max_chars:
                end = _soft_boundary(self._buffer, self.max_chars)
            if end is None:
                return pieces
            pieces.append(self._buffer[:end])
            self._buffer = self._buffer[end:]

    def flush(self) -> str:
        """Return what is left (possibly empty or only whitespace) and reset."""
        rest, self._buffer = self._buffer, ""
        return rest


def split_sentences(text: str) -> list[str]:
    """Split a whole text into sentence pieces (they join back to ``text``)."""
    splitter = SentenceSplitter()
    pieces = splitter.push(text)
    rest = splitter.flush()
    return [*pieces, rest] if rest else pieces


def _boundary(text: str) -> int | None:
    """Index just past the first sentence end in ``text``, or None if there is none yet."""
    lead = len(text) - len(text.lstrip())
    newline = text.find("\n", lead)
    for match in _END.finditer(text):
        if 0 <= newline < match.start():
            break
        end = match.end()
        if not text[: match.start()].strip():
            continue  # punctuation with nothing before it is not a sentence
        punctuation = match.group().rstrip("\"'”’)]")
        word = _WORD_BEFORE.search(text, 0, match.start())
        before = word.group(1) if word else ""
        if end == len(text):
            # Nothing follows yet: decide now, without waiting for the next token.
            return end if _ends_without_lookahead(punctuation, before) else None
        if not text[end].isspace():
            continue  # 3.14, example.com, e.g.x: not a sentence end
        if punctuation == "." and _continues(before):
            continue
        if set(punctuation) <= {".", "…"} and len(punctuation.replace("…", "...")) >= 3:
            following = text[end:].lstrip()
            if not following:
                return None  # an ellipsis: wait to see how the next word starts
            if following[0].islower():
                continue
        return end
    if newline > 0 and text[:newline].strip():
        return newline
    return None


def _continues(word: str) -> bool:
    """True when a ``.`` after ``word`` probably does not end the sentence."""
    bare = word.lstrip("\"'“‘([").lower()
    if bare in ABBREVIATIONS:
        return True
    return len(bare) == 1 and bare.isalpha()  # an initial: "J. Smith"


def _ends_without_lookahead(punctuation: str, word: str) -> bool:
    if "!" in punctuation or "?" in punctuation:
        return True
    if len(punctuation.replace("…", "...")) >= 3:
        return False  # an ellipsis may trail into the same sentence
    if _continues(word):
        return False
    bare = word.lstrip("\"'“‘([")
    if bare[-1:].isdigit():
        return False  # may be a decimal: "3." then "14"
    return "@" not in bare and "://" not in bare and not bare.lower().startswith("www")


def _soft_boundary(text: str, limit: int) -> int:
    head = text[:limit]
    for mark in (", ", "; ", ": "):
        at = head.rfind(mark)
        if at > 0:
            return at + 1
    at = head.rfind(" ")
    return at if at > 0 else limit
