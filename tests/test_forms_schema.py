"""Form files and field validation: loading, clear errors, per-type normalisation."""

from __future__ import annotations

import contextlib
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from voicepipe.forms import (
    Field,
    FieldType,
    Form,
    FormError,
    InvalidAnswer,
    load_form,
    read_back,
    validate_value,
)

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "forms" / "intake.yaml"


def test_example_intake_form_loads() -> None:
    form = load_form(EXAMPLE)
    assert form.name == "intake"
    assert [(f.name, f.type) for f in form.fields] == [
        ("age", FieldType.INTEGER),
        ("email", FieldType.EMAIL),
        ("phone", FieldType.PHONE),
    ]
    # E-mail and phone are read back by default; age is not.
    assert [f.confirms for f in form.fields] == [False, True, True]
    assert form.field("phone").region == "US"


def test_confirm_defaults_per_type_and_is_set_per_field() -> None:
    assert f("email").confirms and f("phone").confirms
    assert not f("integer").confirms and not f("date").confirms
    off = Field(name="e", question="E-mail?", type=FieldType.EMAIL, confirm=False)
    on = Field(name="a", question="Age?", type=FieldType.INTEGER, confirm=True)
    assert not off.confirms
    assert on.confirms


def test_yaml_and_json_give_the_same_form(tmp_path: Path) -> None:
    form = load_form(EXAMPLE)
    (tmp_path / "f.json").write_text(form.model_dump_json(), encoding="utf-8")
    assert load_form(tmp_path / "f.json") == form
    assert Form.from_yaml(EXAMPLE.read_text()) == form


def test_form_built_in_code_with_dates_and_choices() -> None:
    form = Form(
        name="booking",
        fields=[
            Field(name="day", question="Which day?", type="date", min=date(2026, 1, 1)),
            Field(name="room", question="Which room?", type="choice", choices=["Red", "Blue"]),
        ],
    )
    assert form.fields[0].min == date(2026, 1, 1)
    with pytest.raises(KeyError):
        form.field("nope")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name: x\nfields: [", "not valid YAML"),
        ("- a\n- b", "must be a mapping"),
        ("name: x\nfields: []", "fields: a form needs at least one field"),
        ("name: x\nfields:\n  - {name: a, question: q, type: colour}", "fields[0] (a).type"),
        ("name: x\nfields:\n  - {name: a, question: q, type: colour}", "unknown field type"),
        ("name: x\nfields:\n  - {name: a, question: q, colour: red}", "colour: unknown key"),
        ("name: x\nfields:\n  - {name: a, question: q, type: choice}", "needs a non-empty"),
        ("name: x\nfields:\n  - {name: a, question: q, choices: [x]}", "only applies to 'choice'"),
        ("name: x\nfields:\n  - {name: a, question: q, type: integer, min: 5, max: 1}", "'min'"),
        ("name: x\nfields:\n  - {name: a, question: q, type: date, min: 5}", "must be a date"),
        ("name: x\nfields:\n  - {name: a, question: q, type: email, min: 5}", "does not apply"),
        ("name: x\nfields:\n  - {name: a, question: q, type: integer, pattern: x}", "apply to"),
        ("name: x\nfields:\n  - {name: a, question: q, pattern: '('}", "not a valid regular"),
        ("name: x\nfields:\n  - {name: a, question: q, region: US}", "only applies to 'phone'"),
        ("name: x\nfields:\n  - {name: a, question: q}\n  - {name: a, question: r}", "two fields"),
        ("name: x\nfields:\n  - {name: 'a b', question: q}", "fields[0] (a b).name"),
    ],
)
def test_bad_form_files_say_what_is_wrong(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(FormError) as info:
        load_form(path)
    assert str(path) in str(info.value)
    assert message in str(info.value)


def test_missing_unreadable_and_unknown_files(tmp_path: Path) -> None:
    with pytest.raises(FormError, match="cannot read form file"):
        load_form(tmp_path / "missing.yaml")
    (tmp_path / "form.toml").write_text("x", encoding="utf-8")
    with pytest.raises(FormError, match=r"use \.yaml, \.yml or \.json"):
        load_form(tmp_path / "form.toml")
    (tmp_path / "bad.json").write_text("{", encoding="utf-8")
    with pytest.raises(FormError, match="not valid JSON"):
        load_form(tmp_path / "bad.json")
    (tmp_path / "latin1.yaml").write_bytes(b"name: \xe9")
    with pytest.raises(FormError, match="not UTF-8"):
        load_form(tmp_path / "latin1.yaml")


# --- validation --------------------------------------------------------------------


def f(type: str, **kw: Any) -> Field:
    return Field(name="x", question="q?", type=FieldType(type), **kw)


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        (f("text"), "  Ana   María ", "Ana María"),
        (f("text"), 42, "42"),
        (f("integer"), 24, 24),
        (f("integer"), "24", 24),
        (f("integer"), 24.0, 24),
        (f("integer"), "1,200", 1200),
        (f("number"), "3.5", 3.5),
        (f("number"), 3, 3),
        (f("boolean"), True, True),
        (f("boolean"), "Yes.", True),
        (f("boolean"), "no", False),
        (f("email"), "Juan@Gmail.COM", "Juan@gmail.com"),
        (f("phone"), "+1 415 555 0100", "+14155550100"),
        (f("phone", region="US"), "(415) 555-0100", "+14155550100"),
        (f("phone"), 14155550100, "+14155550100"),
        (f("date"), "2001-03-04", "2001-03-04"),
        (f("choice", choices=["Red", "Dark Blue"]), " dark  blue ", "Dark Blue"),
        (f("text", pattern=r"[A-Z]{3}\d{3}"), "ABC123", "ABC123"),
    ],
)
def test_valid_values_are_normalised(field: Field, value: Any, expected: Any) -> None:
    result = validate_value(field, value)
    assert result == expected
    assert type(result) is type(expected)


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        (f("text"), None, "didn't get an answer"),
        (f("text"), "   ", "didn't get an answer"),
        (f("text"), ["a"], "single answer"),
        (f("text", min_length=3), "ab", "at least 3 characters"),
        (f("text", max_length=3), "abcd", "at most 3 characters"),
        (f("text", pattern=r"\d+"), "abc", "expected format"),
        (f("integer"), "twenty four", "whole number"),
        (f("integer"), 2.5, "whole number"),
        (f("integer"), True, "whole number"),
        (f("integer", min=0, max=130), 200, "at most 130"),
        (f("integer", min=0, max=130), -1, "at least 0"),
        (f("number"), "nan", "a number"),
        (f("number"), "abc", "a number"),
        (f("boolean"), "maybe", "yes or a no"),
        (f("email"), "juan at gmail dot com", "valid e-mail"),
        (f("email"), "juan@", "valid e-mail"),
        (f("email"), 5, "e-mail address"),
        (f("phone"), "415 555 0100", "country code"),
        (f("phone"), "+1 123", "valid phone"),
        (f("phone"), "call me", "phone number"),
        (f("phone"), "+1 555 555 5555", "valid phone"),
        (f("date"), "March 4th", "a date"),
        (f("date", max=date(2000, 1, 1)), "2001-03-04", "on or before January 1, 2000"),
        (f("date", min=date(2002, 1, 1)), "2001-03-04", "on or after January 1, 2002"),
        (f("choice", choices=["Red", "Blue", "Green"]), "pink", "Red, Blue or Green"),
    ],
)
def test_invalid_values_are_rejected_with_a_reason(field: Field, value: Any, reason: str) -> None:
    with pytest.raises(InvalidAnswer) as info:
        validate_value(field, value)
    assert reason in info.value.reason


def test_default_region_applies_when_the_field_has_none() -> None:
    assert validate_value(f("phone"), "415 555 0100", default_region="US") == "+14155550100"
    assert validate_value(f("phone", region="GB"), "020 7946 0018", default_region="US") == (
        "+442079460018"
    )


@given(st.integers(min_value=-(10**15), max_value=10**15))
def test_integers_round_trip_as_numbers_and_strings(n: int) -> None:
    field = f("integer")
    assert validate_value(field, n) == n
    assert validate_value(field, str(n)) == n


@given(st.text(max_size=40))
def test_validation_never_raises_anything_but_invalid_answer(text: str) -> None:
    for field in (f("integer"), f("number"), f("email"), f("phone"), f("date"), f("boolean")):
        with contextlib.suppress(InvalidAnswer):
            validate_value(field, text)


def test_read_back() -> None:
    assert read_back(f("email"), "juan@gmail.com") == "j-u-a-n at gmail dot com"
    assert read_back(f("email"), "juan.perez_2@mail.co.uk") == (
        "j-u-a-n dot p-e-r-e-z underscore 2 at mail dot co dot uk"
    )
    assert read_back(f("email"), "ana-l@correo.es", "es") == "a-n-a guion l arroba correo punto es"
    # Digit by digit, in the groups people say them in.
    assert read_back(f("phone"), "+14155550100") == "plus 1, 4 1 5, 5 5 5, 0 1 0 0"
    assert read_back(f("date"), "2001-03-04") == "March 4, 2001"
    assert read_back(f("boolean"), False) == "no"
    assert read_back(f("integer"), 24) == "24"


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_a_form_file_nested_too_deeply_is_a_form_error(tmp_path: Path, suffix: str) -> None:
    # Found by review: a RecursionError escaped, and the CLI said "unexpected RecursionError".
    path = tmp_path / f"deep{suffix}"
    path.write_text("[" * 100_000 + "]" * 100_000, encoding="utf-8")
    with pytest.raises(FormError, match="nested too deeply"):
        load_form(path)
