"""Numbers said in words or digits: "fifty two", "thirty-four", "I'm 34", "one hundred and five"."""

from __future__ import annotations

import re

from voicepipe.forms.spoken._text import digits_text
from voicepipe.forms.spoken.languages import Language

__all__ = ["numbers"]

# A cardinal standing alone: not part of an ordinal ("3rd"), a word or a longer number.
_NUMBER = re.compile(r"(?<![\w.,])([-+]?\d+(?:[.,]\d+)?)(?![\w.,]*\w)")


def numbers(text: str, lang: Language) -> list[int | float]:
    """Every number said in ``text``, in order ("i'm 34 and she is 5" -> [34, 5])."""
    found: list[int | float] = []
    for match in _NUMBER.finditer(digits_text(text, lang.code)):
        token = match.group(1)
        if "," in token:
            # "3,5" is three and a half in Spanish; "1,000" a thousand in English.
            head, _, tail = token.partition(",")
            token = head + tail if len(tail) == 3 and not lang.day_first else head + "." + tail
        value = float(token) if "." in token else int(token)
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if value not in found:
            found.append(value)
    return found
