"""Spoken values: read a form answer from what the caller said, without an LLM.

:func:`parse_answer` reads the value of a field from a transcript ("fifty
two" -> 52, "juan dot perez at gmail dot com" -> "juan.perez@gmail.com",
"plus one four one five..." -> "+1415...", "March third nineteen ninety" ->
"1990-03-03", "yeah" -> True, a choice matched fuzzily) and returns every
value that passes the field's validation. One module per kind of value; the
words of each language are data (:mod:`voicepipe.forms.spoken.languages`).

:func:`supported` checks a value from elsewhere (an LLM) against the
transcript: a value the caller did not say is not supported.
"""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field as dataclass_field
from typing import Any

from voicepipe.forms.schema import Field, FieldType
from voicepipe.forms.spoken.languages import EN, LANGUAGES, Language, language
from voicepipe.forms.validation import InvalidAnswer, validate_value

__all__ = [
    "LANGUAGES",
    "Language",
    "Parsed",
    "candidates",
    "language",
    "parse",
    "parse_answer",
    "supported",
    "unclear",
]


@dataclass(slots=True)
class Parsed:
    """What :func:`parse` read: the distinct valid ``values``, and why others were not valid.

    ``errors`` holds the reason of each value said that failed validation
    ("It must be at most 130."), to tell the caller what was wrong with it.
    """

    values: list[Any] = dataclass_field(default_factory=list)
    errors: list[str] = dataclass_field(default_factory=list)


def candidates(field: Field, text: str, lang: Language) -> list[Any]:
    """The raw values of ``field``'s type said in ``text`` (not yet validated)."""
    match field.type:
        case FieldType.INTEGER | FieldType.NUMBER:
            from voicepipe.forms.spoken.numbers import numbers

            return list(numbers(text, lang))
        case FieldType.EMAIL:
            from voicepipe.forms.spoken.emails import email_address

            return list(email_address(text, lang))
        case FieldType.PHONE:
            from voicepipe.forms.spoken.phones import phone_number

            return list(phone_number(text, lang))
        case FieldType.DATE:
            from voicepipe.forms.spoken.dates import dates

            return list(dates(text, lang))
        case FieldType.BOOLEAN:
            from voicepipe.forms.spoken.yes_no import yes_no

            verdict = yes_no(text, lang)
            return [] if verdict is None else [verdict]
        case FieldType.CHOICE:
            from voicepipe.forms.spoken.choices import choices

            return list(choices(text, field.choices or ()))
    return []  # free text: only the LLM can tell the answer from the words around it


def parse(field: Field, text: str, lang: str | Language = "en") -> Parsed:
    """The values of ``field`` said in ``text``, validated (see :class:`Parsed`)."""
    words = language(lang) if isinstance(lang, str) else lang
    parsed = Parsed()
    for raw in candidates(field, text, words):
        try:
            value = validate_value(field, raw)
        except InvalidAnswer as exc:
            parsed.errors.append(exc.reason)
            continue
        if value not in parsed.values:
            parsed.values.append(value)
    return parsed


def parse_answer(field: Field, text: str, lang: str | Language = "en") -> list[Any]:
    """The distinct valid values of ``field`` said in ``text``.

    Exactly one means the answer is clear; none or several mean it is not
    (ask again, or let an LLM choose among what was said).
    """
    return parse(field, text, lang).values


_CLEAR_TYPES = (FieldType.INTEGER, FieldType.NUMBER, FieldType.DATE)


def unclear(field: Field, text: str, lang: str | Language = "en") -> list[str]:
    """The words of ``text`` that are neither the value nor the words around one.

    For number and date fields: "i'm sixty want" leaves ["want"], a hint that
    the recogniser misheard part of the number, so the value should be read
    back rather than stored silently. For choices, e-mail addresses and phone
    numbers: the words that negate ("I don't want fish" leaves ["don't"]), as
    the value said may be the one refused. Empty for free text.
    """
    words = language(lang) if isinstance(lang, str) else lang
    if field.type in (FieldType.CHOICE, FieldType.EMAIL, FieldType.PHONE):
        from voicepipe.forms.spoken._text import words as split

        negating = words.no | words.negations | EN.no | EN.negations
        return [w for w in split(text) if w in negating]
    if field.type not in _CLEAR_TYPES:
        return []
    import re

    from voicepipe.forms.spoken._text import digits_text

    months = {name for names in words.months for name in names}
    said = re.findall(r"[^\W_]+(?:'[^\W_]+)?", digits_text(text, words.code))
    return [
        w
        for w in said
        if not w[0].isdigit()
        and w not in words.context
        and w not in months
        and w not in words.zero_words
    ]


def supported(field: Field, value: Any, text: str, lang: str | Language = "en") -> bool:
    """Whether the caller said ``value`` (already validated for ``field``) in ``text``.

    Numbers, dates, yes/no and choices must be among what was said; an
    e-mail address must be spelled out in the transcript (ignoring spaces
    and symbols' names), a phone number's digits must have been said in
    order, and free text must appear in it as whole words, allowing for a
    few letters' difference.
    """
    words = language(lang) if isinstance(lang, str) else lang
    match field.type:
        case FieldType.INTEGER | FieldType.NUMBER | FieldType.DATE | FieldType.BOOLEAN:
            return value in parse_answer(field, text, words)
        case FieldType.CHOICE:
            from voicepipe.forms.spoken.choices import choice_scores

            scores = choice_scores(text, field.choices or ())
            return any(score >= 70 and c == value for score, c in scores)
        case FieldType.EMAIL:
            from voicepipe.forms.spoken.emails import spoken_symbols

            said = _squeeze("".join(spoken_symbols(text, words)))
            local, _, domain = str(value).casefold().rpartition("@")
            return bool(local) and _squeeze(local) in said and _squeeze(domain) in said
        case FieldType.PHONE:
            from voicepipe.forms.spoken.phones import phone_digits

            _, said = phone_digits(text, words)
            digits = "".join(ch for ch in str(value) if ch.isdigit())
            # The country code may be implied by the field's region.
            return len(said) >= 3 and any(digits[i:] == said for i in range(0, 4))
        case FieldType.TEXT:
            return _said_as_words(str(value), text)
    return False  # pragma: no cover


def _said_as_words(value: str, text: str) -> bool:
    """Whether ``value``'s words were said together in ``text``, allowing a few
    letters' difference and one word more or less ("McDonald" for "mc donald").

    Words, not letters: "Dan" is not said in "Daniel", nor "Ana" in "Dana".
    """
    from rapidfuzz import fuzz

    from voicepipe.forms.spoken._text import words

    want, said = words(value), words(text)
    if not want:
        return False
    target = " ".join(want)
    for size in sorted({max(1, len(want) - 1), len(want), len(want) + 1}):
        for start in range(max(1, len(said) - size + 1)):
            if fuzz.ratio(target, " ".join(said[start : start + size])) >= 90:
                return True
    return False


def _squeeze(text: str) -> str:
    return "".join(ch for ch in text.casefold() if ch.isalnum())
