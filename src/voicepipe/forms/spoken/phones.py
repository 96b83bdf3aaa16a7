"""Phone numbers as people say them: digit by digit, in groups, "double five", "oh" for zero.

The result is the digits said, with a leading "+" when "plus" was said first;
``phonenumbers`` (through :func:`voicepipe.forms.validate_value`) decides
whether that is a valid number.
"""

from __future__ import annotations

import re

from voicepipe.forms.spoken._text import digits_text
from voicepipe.forms.spoken.languages import Language

__all__ = ["phone_digits", "phone_number"]

_TOKEN = re.compile(r"\d+|\+|[^\W\d_]+(?:'[^\W\d_]+)?")


def phone_digits(text: str, lang: Language) -> tuple[bool, str]:
    """(whether "plus" came before the digits, the digits said in order)."""
    tokens = _TOKEN.findall(digits_text(text, lang.code))
    plus = False
    digits: list[str] = []
    for index, token in enumerate(tokens):
        if token.isdigit():
            digits.append(token)
            continue
        if token == "+" or token in lang.plus:
            plus = plus or not digits
            continue
        after = tokens[index + 1] if index + 1 < len(tokens) else ""
        before = tokens[index - 1] if index else ""
        if token in lang.digit_homophones and after.isdigit() and (before.isdigit() or not digits):
            # "five to six", "for one five": the recogniser's spelling of a digit it heard.
            digits.append(lang.digit_homophones[token])
        elif token in lang.repeat and (after.isdigit() or after in lang.zero_words):
            # "double five" -> 55: the digit itself follows as the next token.
            digits.append((after[0] if after.isdigit() else "0") * (lang.repeat[token] - 1))
        elif token in lang.zero_words and (
            after.isdigit()
            or before.isdigit()
            or after in lang.zero_words
            or before in lang.zero_words
            or before in lang.repeat
        ):
            digits.append("0")
    return plus, "".join(digits)


def phone_number(text: str, lang: Language) -> list[str]:
    """The phone number said in ``text`` (a one-item list), or [] if too few digits."""
    plus, digits = phone_digits(text, lang)
    if len(digits) < 3:
        return []
    return [("+" if plus else "") + digits]
