"""Deterministic validation and normalisation of form answers.

The LLM turns what the user said into a JSON value ("twenty four" -> 24);
this module has the last word on whether that value is acceptable, and puts
it in its canonical form. Everything that reaches a store went through
:func:`validate_value`. E-mail addresses are checked by ``email-validator``
and phone numbers by ``phonenumbers`` (imported on first use).

Values come back JSON-ready: ``int``, ``float``, ``bool``, ``str`` (an e-mail
address, an E.164 phone number such as ``+14155550100``, an ISO date
``2001-03-04``, the canonical spelling of a choice).
"""

from __future__ import annotations

import math
import re
from datetime import date
from typing import Any

from voicepipe.forms.schema import Field, FieldType

__all__ = ["InvalidAnswer", "read_back", "validate_value"]

_TRUE = {"yes", "true", "y", "yeah", "yep", "si", "sí", "oui", "ja"}
_FALSE = {"no", "false", "n", "nope", "non", "nein"}
_INT_TEXT = re.compile(r"^[+-]?\d+$")


class InvalidAnswer(ValueError):
    """A value that fails a field's validation. ``reason`` is one short spoken sentence."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def validate_value(field: Field, value: Any, *, default_region: str | None = None) -> Any:
    """Return ``value`` normalised for ``field``, or raise :class:`InvalidAnswer`.

    ``default_region`` is used for phone numbers without a country code when the
    field has no ``region`` of its own.
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        raise InvalidAnswer("I didn't get an answer.")
    if isinstance(value, dict | list):
        raise InvalidAnswer("I need a single answer.")
    match field.type:
        case FieldType.TEXT:
            return _check_text(field, _as_text(value))
        case FieldType.INTEGER:
            return _check_range(field, _as_int(value))
        case FieldType.NUMBER:
            return _check_range(field, _as_number(value))
        case FieldType.BOOLEAN:
            return _as_bool(value)
        case FieldType.EMAIL:
            return _check_text(field, _as_email(value))
        case FieldType.PHONE:
            return _as_phone(value, field.region or default_region)
        case FieldType.DATE:
            return _as_date(field, value)
        case FieldType.CHOICE:
            return _as_choice(field, value)
    raise AssertionError(f"unhandled field type {field.type!r}")  # pragma: no cover


def _as_text(value: Any) -> str:
    if isinstance(value, bool):
        raise InvalidAnswer("I need an answer in words.")
    return " ".join(str(value).split())


def _check_text(field: Field, text: str) -> str:
    if field.min_length is not None and len(text) < field.min_length:
        raise InvalidAnswer(f"That is too short; it needs at least {field.min_length} characters.")
    if field.max_length is not None and len(text) > field.max_length:
        raise InvalidAnswer(f"That is too long; it can have at most {field.max_length} characters.")
    if field.pattern is not None and re.fullmatch(field.pattern, text) is None:
        raise InvalidAnswer(f"That is not in the expected format for the {field.label}.")
    return text


def _as_int(value: Any) -> int:
    if isinstance(value, bool):
        raise InvalidAnswer("I need a whole number.")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        text = value.strip().replace(",", "").replace("_", "")
        if _INT_TEXT.match(text) and len(text) <= 20:
            return int(text)
    raise InvalidAnswer("I need a whole number.")


def _as_number(value: Any) -> int | float:
    if isinstance(value, bool):
        raise InvalidAnswer("I need a number.")
    number: int | float
    if isinstance(value, int | float):
        number = value
    elif isinstance(value, str) and len(value) <= 40:
        text = value.strip().replace(",", "").replace("_", "")
        try:
            number = int(text) if _INT_TEXT.match(text) else float(text)
        except ValueError:
            raise InvalidAnswer("I need a number.") from None
    else:
        raise InvalidAnswer("I need a number.")
    if isinstance(number, float) and not math.isfinite(number):
        raise InvalidAnswer("I need a number.")
    return number


def _check_range(field: Field, number: int | float) -> int | float:
    low, high = field.min, field.max
    if isinstance(low, int | float) and number < low:
        raise InvalidAnswer(f"It must be at least {_fmt_number(low)}.")
    if isinstance(high, int | float) and number > high:
        raise InvalidAnswer(f"It must be at most {_fmt_number(high)}.")
    return number


def _fmt_number(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def _as_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        word = value.strip().casefold().rstrip(".!")
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
    raise InvalidAnswer("I need a yes or a no.")


def _as_email(value: Any) -> str:
    from email_validator import EmailNotValidError, validate_email

    if not isinstance(value, str):
        raise InvalidAnswer("That doesn't look like an e-mail address.")
    try:
        info = validate_email(value.strip(), check_deliverability=False)
    except EmailNotValidError:
        raise InvalidAnswer("That doesn't look like a valid e-mail address.") from None
    return str(info.normalized)


def _as_phone(value: Any, region: str | None) -> str:
    import phonenumbers

    if isinstance(value, bool) or not isinstance(value, str | int):
        raise InvalidAnswer("That doesn't look like a phone number.")
    text = str(value).strip()
    if isinstance(value, int) and region is None:
        text = "+" + text
    try:
        number = phonenumbers.parse(text, region.upper() if region else None)
    except phonenumbers.NumberParseException:
        if region is None and not text.startswith("+"):
            raise InvalidAnswer(
                "I need the phone number with its country code, like plus one for the US."
            ) from None
        raise InvalidAnswer("That doesn't look like a phone number.") from None
    if not phonenumbers.is_valid_number(number):
        raise InvalidAnswer("That doesn't look like a valid phone number.")
    return str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))


def _as_date(field: Field, value: Any) -> str:
    if isinstance(value, date):
        day = value
    elif isinstance(value, str):
        try:
            day = date.fromisoformat(value.strip())
        except ValueError:
            raise InvalidAnswer("I need a date, with day, month and year.") from None
    else:
        raise InvalidAnswer("I need a date, with day, month and year.")
    if isinstance(field.min, date) and day < field.min:
        raise InvalidAnswer(f"The date must be on or after {_say_date(field.min)}.")
    if isinstance(field.max, date) and day > field.max:
        raise InvalidAnswer(f"The date must be on or before {_say_date(field.max)}.")
    return day.isoformat()


_MONTHS = (
    *("January", "February", "March", "April", "May", "June"),
    *("July", "August", "September", "October", "November", "December"),
)


def _say_date(day: date) -> str:
    return f"{_MONTHS[day.month - 1]} {day.day}, {day.year}"


def _as_choice(field: Field, value: Any) -> str:
    assert field.choices is not None
    wanted = " ".join(str(value).split()).casefold()
    for choice in field.choices:
        if choice.strip().casefold() == wanted:
            return choice
    options = ", ".join(field.choices[:-1]) + " or " + field.choices[-1]
    if len(field.choices) == 1:
        options = field.choices[0]
    raise InvalidAnswer(f"The answer must be {options}.")


def read_back(field: Field, value: Any, language: str = "en") -> str:
    """How to say a validated value back to the user, for confirmation.

    The way people check them: e-mail addresses spelled letter by letter with
    their symbols named ("j-u-a-n dot p-e-r-e-z at gmail dot com"; "arroba"
    and "punto" in Spanish), phone numbers digit by digit in their usual
    groups ("plus 1, 4 1 5, 5 5 5, 0 1 0 0"), dates as words.
    """
    if field.type is FieldType.EMAIL and isinstance(value, str) and "@" in value:
        names = _symbol_names(language)
        local, _, domain = value.rpartition("@")
        spelled = [
            names.get(part, part) if part in names else "-".join(part)
            for part in re.split(r"([._+-])", local)
            if part
        ]
        host = [names.get(part, part) for part in re.split(r"([.-])", domain) if part]
        return " ".join([*spelled, names["@"], *host])
    if field.type is FieldType.PHONE and isinstance(value, str):
        return _say_phone(value)
    if field.type is FieldType.DATE and isinstance(value, str):
        return _say_date(date.fromisoformat(value))
    if field.type is FieldType.BOOLEAN:
        return "yes" if value else "no"
    return str(value)


def _symbol_names(language: str) -> dict[str, str]:
    """The first spoken name of each e-mail symbol in ``language``."""
    from voicepipe.forms.spoken.languages import language as words_of

    names: dict[str, str] = {}
    for phrase, symbol in words_of(language).symbols.items():
        names.setdefault(symbol, phrase)
    return names


def _say_phone(value: str) -> str:
    import phonenumbers

    try:
        number = phonenumbers.parse(value, None)
        groups = re.findall(
            r"\d+",
            phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL),
        )
    except phonenumbers.NumberParseException:
        groups = [ch for ch in value if ch.isdigit()]
    said = ", ".join(" ".join(group) for group in groups)
    return ("plus " if value.startswith("+") else "") + said
