"""Forms as data: :class:`Form` and :class:`Field`, built in code or loaded from YAML/JSON.

A form file looks like::

    name: intake
    title: patient intake
    fields:
      - name: age
        question: How old are you?
        type: integer
        min: 0
        max: 130
      - name: email
        question: What is your e-mail address?
        type: email
        confirm: true

:func:`load_form` reads such a file and raises :class:`FormError` naming the
file and the offending key when it is not a valid form.
"""

from __future__ import annotations

import json
import re
from datetime import date
from enum import StrEnum
from pathlib import Path
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator
from pydantic import Field as PydanticField

from voicepipe.errors import VoicepipeError

__all__ = ["Field", "FieldType", "Form", "FormError", "load_form"]

_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"


class FormError(VoicepipeError, ValueError):
    """A form definition that cannot be used: a missing file, bad YAML, an unknown field type..."""


class FieldType(StrEnum):
    """What kind of value a field holds; each has its own deterministic validation."""

    TEXT = "text"
    INTEGER = "integer"
    NUMBER = "number"
    BOOLEAN = "boolean"
    EMAIL = "email"
    PHONE = "phone"
    DATE = "date"
    CHOICE = "choice"


_NUMERIC = (FieldType.INTEGER, FieldType.NUMBER)
_STRINGY = (FieldType.TEXT, FieldType.EMAIL)


class Field(BaseModel):
    """One question of a form.

    ``min``/``max`` bound the value of ``integer``/``number`` fields (numbers)
    and ``date`` fields (dates, ``YYYY-MM-DD``). ``min_length``,
    ``max_length`` and ``pattern`` (a regular expression the whole value must
    match) apply to ``text`` and ``email``. ``region`` is the default region
    (ISO 3166 code such as ``"US"``) for phone numbers said without a country
    code; without it a phone number must include its country code.
    ``hint`` helps the LLM when the answer cannot be read without it;
    ``examples`` document the field for people and are never put in a
    prompt (a small model copies example values into its answers). With
    ``confirm`` the value is read back and stored only after a yes; left
    unset, e-mail and phone fields are confirmed and others are not (see
    :attr:`confirms`).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = PydanticField(pattern=_NAME, max_length=64)
    question: str = PydanticField(min_length=1)
    type: FieldType = FieldType.TEXT
    required: bool = True
    hint: str | None = None
    examples: tuple[str, ...] = ()
    confirm: bool | None = None
    choices: tuple[str, ...] | None = None
    min: float | date | None = None
    max: float | date | None = None
    min_length: int | None = PydanticField(default=None, ge=0)
    max_length: int | None = PydanticField(default=None, ge=1)
    pattern: str | None = None
    region: str | None = PydanticField(default=None, pattern=r"^[A-Za-z]{2}$")

    @model_validator(mode="after")
    def _check_constraints(self) -> Self:
        if self.type is FieldType.CHOICE:
            if not self.choices:
                raise ValueError("a 'choice' field needs a non-empty 'choices' list")
            folded = [c.strip().casefold() for c in self.choices]
            if len(set(folded)) != len(folded) or not all(folded):
                raise ValueError("'choices' must be distinct, non-empty strings")
        elif self.choices is not None:
            raise ValueError(f"'choices' only applies to 'choice' fields, not {self.type.value!r}")
        for bound in ("min", "max"):
            value = getattr(self, bound)
            if value is None:
                continue
            if self.type in _NUMERIC:
                if isinstance(value, date):
                    raise ValueError(f"'{bound}' of a {self.type.value!r} field must be a number")
            elif self.type is FieldType.DATE:
                if not isinstance(value, date):
                    raise ValueError(f"'{bound}' of a 'date' field must be a date (YYYY-MM-DD)")
            else:
                raise ValueError(f"'{bound}' does not apply to {self.type.value!r} fields")
        if self.min is not None and self.max is not None and self.min > self.max:  # type: ignore[operator]
            raise ValueError("'min' is greater than 'max'")
        uses_length = self.min_length is not None or self.max_length is not None
        if (uses_length or self.pattern is not None) and self.type not in _STRINGY:
            raise ValueError(
                f"'min_length', 'max_length' and 'pattern' apply to text and email fields, "
                f"not {self.type.value!r}"
            )
        if (
            self.min_length is not None
            and self.max_length is not None
            and self.min_length > self.max_length
        ):
            raise ValueError("'min_length' is greater than 'max_length'")
        if self.pattern is not None:
            try:
                re.compile(self.pattern)
            except re.error as exc:
                raise ValueError(f"'pattern' is not a valid regular expression: {exc}") from exc
        if self.region is not None and self.type is not FieldType.PHONE:
            raise ValueError("'region' only applies to 'phone' fields")
        return self

    @property
    def confirms(self) -> bool:
        """Whether the value is read back before it is stored (``confirm``, or its default)."""
        if self.confirm is None:
            return self.type in (FieldType.EMAIL, FieldType.PHONE)
        return self.confirm

    @property
    def label(self) -> str:
        """The field name as words ("date_of_birth" -> "date of birth")."""
        return self.name.replace("_", " ")


class Form(BaseModel):
    """A named list of fields, asked in order.

    ``language`` is the language the questions are written in; a
    :class:`~voicepipe.FormPolicy` in another language has the LLM phrase them.
    ``greeting`` and ``closing`` replace the default opening and closing lines.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = PydanticField(min_length=1, max_length=200)
    title: str | None = None
    language: str = "en"
    greeting: str | None = None
    closing: str | None = None
    fields: tuple[Field, ...] = PydanticField(min_length=1)

    @model_validator(mode="after")
    def _unique_names(self) -> Self:
        seen: set[str] = set()
        for f in self.fields:
            if f.name in seen:
                raise ValueError(f"two fields are named {f.name!r}")
            seen.add(f.name)
        return self

    def field(self, name: str) -> Field:
        """The field called ``name`` (KeyError if there is none)."""
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(name)

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "form") -> Form:
        """Build a form from parsed YAML/JSON data, or raise :class:`FormError`."""
        if not isinstance(data, dict):
            raise FormError(f"{source}: a form must be a mapping with 'name' and 'fields'")
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise FormError(f"{source}: not a valid form:\n{_describe(exc, data)}") from exc

    @classmethod
    def from_yaml(cls, text: str, *, source: str = "form") -> Form:
        """Parse a form from YAML text (JSON is valid YAML too)."""
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise FormError(f"{source}: not valid YAML: {exc}") from exc
        except RecursionError:
            raise FormError(f"{source}: {_TOO_DEEP}") from None
        return cls.from_dict(data, source=source)

    @classmethod
    def from_json(cls, text: str, *, source: str = "form") -> Form:
        """Parse a form from JSON text."""
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise FormError(f"{source}: not valid JSON: {exc}") from exc
        except RecursionError:
            raise FormError(f"{source}: {_TOO_DEEP}") from None
        return cls.from_dict(data, source=source)


_TOO_DEEP = "not a form: lists or mappings nested too deeply (a form is 3 levels deep)"


def _describe(exc: ValidationError, data: dict[str, Any]) -> str:
    """One line per problem, with field names instead of list indexes where possible."""
    lines = []
    for err in exc.errors():
        loc = list(err["loc"])
        parts: list[str] = []
        fields = data.get("fields")
        if len(loc) >= 2 and loc[0] == "fields" and isinstance(loc[1], int):
            name = None
            entry = fields[loc[1]] if isinstance(fields, list) and loc[1] < len(fields) else None
            if isinstance(entry, dict):
                name = entry.get("name")
            parts.append(f"fields[{loc[1]}]" + (f" ({name})" if isinstance(name, str) else ""))
            loc = loc[2:]
        parts.extend(str(p) for p in loc)
        where = ".".join(parts) or "form"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        elif err["type"] == "too_short" and where == "fields":
            msg = "a form needs at least one field"
        elif err["type"] == "enum":
            msg = "unknown field type; expected one of " + ", ".join(t.value for t in FieldType)
        lines.append(f"  {where}: {msg}")
    return "\n".join(lines)


def load_form(path: str | Path) -> Form:
    """Load a form from a ``.yaml``/``.yml`` or ``.json`` file.

    Raises :class:`FormError` (with the path and the offending keys) when the
    file is missing or not a valid form.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise FormError(f"{p}: cannot read form file: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise FormError(f"{p}: form file is not UTF-8 text") from exc
    suffix = p.suffix.lower()
    if suffix == ".json":
        return Form.from_json(text, source=str(p))
    if suffix in (".yaml", ".yml"):
        return Form.from_yaml(text, source=str(p))
    raise FormError(f"{p}: unknown form file type {suffix!r}; use .yaml, .yml or .json")
