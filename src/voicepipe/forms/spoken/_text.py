"""Shared text handling: words of a transcript, and numbers in words turned into digits."""

from __future__ import annotations

import re
from functools import lru_cache

__all__ = ["digits_text", "fold", "words"]

# The languages text2num reads; others fall back to English number words.
_TEXT2NUM = frozenset(["en", "es", "fr", "de", "it", "pt", "nl", "da"])
_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)?|[@+]")


def fold(text: str) -> str:
    """Lower case, with curly apostrophes made straight and runs of spaces made one."""
    return " ".join(text.casefold().replace("’", "'").split())


def words(text: str) -> list[str]:
    """The words of ``text``, folded, without punctuation ("I'm 34." -> ["i'm", "34"])."""
    return _WORD.findall(fold(text))


@lru_cache(maxsize=512)
def digits_text(text: str, code: str) -> str:
    """``text`` folded, with every number said in words written in digits.

    "i am thirty-four" -> "i am 34"; "tres de marzo" -> "3 de marzo". Isolated
    small numbers ("one", "uno") are converted too, since in a form answer
    they are values, not articles.
    """
    from text_to_num import alpha2digit

    lang = code if code in _TEXT2NUM else "en"
    folded = fold(text)
    try:
        return str(alpha2digit(folded, lang, threshold=0))
    except Exception:  # text2num is strict about some inputs: keep the words then
        return folded
