"""FormPolicy's own lines in the form's language (Spanish here), from forms/lines.py."""

from __future__ import annotations

import pytest

from tests.test_forms_policy import Session, said, store
from voicepipe.forms import Field, FieldType, Form, FormStore
from voicepipe.forms.lines import LINES, line

pytestmark = pytest.mark.anyio
__all__ = ["store"]  # the fixture, imported for use here

FORMULARIO = Form(
    name="alta",
    language="es",
    fields=(
        Field(name="edad", question="¿Cuántos años tiene?", type=FieldType.INTEGER, max=130),
        Field(name="correo", question="¿Cuál es su correo?", type=FieldType.EMAIL),
    ),
)


async def test_a_spanish_form_speaks_its_own_lines_in_spanish(store: FormStore) -> None:
    s = Session(store, form=FORMULARIO, language="es")
    assert await said(await s.start()) == (
        "¡Hola! Tengo unas preguntas para usted. ¿Cuántos años tiene?"
    )
    assert await said(await s.turn("no sé")) == "Perdón, no entendí su edad. ¿Cuántos años tiene?"
    await s.turn("cincuenta y dos")
    reply = await s.turn("juan arroba gmail punto com")
    text = await said(reply)
    assert text.startswith("Tengo j-u-a-n arroba gmail punto com. ¿Es correcto?")
    assert "Is that right" not in text


def test_every_language_has_every_line() -> None:
    for lines in LINES.values():
        assert lines.keys() == LINES["en"].keys()
    assert line("hello_title", "es-MX", title="alta") == "¡Hola! Vamos a rellenar el alta."
    assert line("hello", "fr") == LINES["en"]["hello"]  # no French lines: English
