"""Dates as people say them: "March third nineteen ninety", "the 3rd of March 1990",
"tres de marzo de mil novecientos noventa", "1990-03-03", "3/3/1990".

Month names come from the language's data and numbers in words from
``text2num``; a year may be said in two halves ("nineteen ninety", "nineteen
oh five"). Only complete dates are read: without a day, a month and a year
there is no value.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date

from voicepipe.forms.spoken._text import digits_text
from voicepipe.forms.spoken.languages import Language

__all__ = ["dates"]

_ISO = re.compile(r"\b(\d{4})-(\d{1,2})-(\d{1,2})\b")
_SLASHED = re.compile(r"\b(\d{1,2})[/.-](\d{1,2})[/.-](\d{4})\b")
_TOKEN = re.compile(r"\d+(?:st|nd|rd|th|º|ª|o|a|er|ro|do|to|vo|mo|no)?\b|[^\W\d_]+")
_ORDINAL = re.compile(r"^(\d+)(?:st|nd|rd|th|º|ª|o|a|er|ro|do|to|vo|mo|no)$")


def dates(text: str, lang: Language) -> list[str]:
    """Every complete date said in ``text``, as ISO strings (usually one)."""
    normal = digits_text(text, lang.code)
    found: list[str] = []
    for y, m, d in _ISO.findall(normal):
        _add(found, int(y), int(m), int(d))
    for a, b, y in _SLASHED.findall(normal):
        day, month = (a, b) if lang.day_first else (b, a)
        _add(found, int(y), int(month), int(day))
    if found:
        return found
    months = {name: index + 1 for index, names in enumerate(lang.months) for name in names}
    tokens = _TOKEN.findall(normal)
    month_at = [i for i, t in enumerate(tokens) if t in months]
    if len(month_at) != 1:
        return []
    month = months[tokens[month_at[0]]]
    numbers: list[tuple[int, int, bool]] = []  # (position, value, said as an ordinal)
    for i, token in enumerate(tokens):
        ordinal = _ORDINAL.match(token)
        if ordinal:
            numbers.append((i, int(ordinal.group(1)), True))
        elif token.isdigit():
            numbers.append((i, int(token), False))
        elif token in lang.zero_words and 0 < i < len(tokens) - 1 and tokens[i + 1].isdigit():
            numbers.append((i, 0, False))  # "nineteen oh five"
    # The first reading of the year that leaves exactly one day: "july twenty six
    # nineteen fifty five" is 26 and 1955, not 2619 and a day of 55.
    for year, used in _years(numbers):
        days = [n for n in numbers if n[0] not in used and 1 <= n[1] <= 31]
        if len(days) == 1:
            _add(found, year, month, days[0][1])
            return found
    return []


def _years(numbers: list[tuple[int, int, bool]]) -> Iterator[tuple[int, set[int]]]:
    """Each way a year may have been said: its value and the positions of its tokens."""
    for i, value, ordinal in numbers:
        if 1000 <= value <= 2999 and not ordinal:
            yield value, {i}
    # Said in halves: "19 90", "20 24", "19 oh 5".
    for k in range(len(numbers) - 1):
        (i, high, o1), (j, low, o2) = numbers[k], numbers[k + 1]
        if o1 or o2 or j != i + 1 or not 10 <= high <= 29:
            continue
        if low == 0 and k + 2 < len(numbers) and numbers[k + 2][0] == j + 1:
            n, digit, _ = numbers[k + 2]
            if digit < 10:
                yield high * 100 + digit, {i, j, n}
        if 10 <= low <= 99:
            yield high * 100 + low, {i, j}


def _add(found: list[str], year: int, month: int, day: int) -> None:
    try:
        value = date(year, month, day).isoformat()
    except ValueError:
        return
    if value not in found:
        found.append(value)
