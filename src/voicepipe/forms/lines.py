"""What FormPolicy says in its own words (greeting, re-asks, read-back frame, goodbye),
per language, as data: a language is one more entry of :data:`LINES`.

Lines are ``str.format`` templates (``{title}``, ``{label}``, ``{said}``,
``{reason}``). A language without an entry speaks English; ``line`` looks up
"es-MX" as "es".
"""

from __future__ import annotations

__all__ = ["LINES", "line"]

LINES: dict[str, dict[str, str]] = {
    "en": {
        "welcome_back": "Welcome back! Let's continue where we left off.",
        "hello_title": "Hello! Let's fill in the {title}.",
        "hello": "Hello! I have a few questions for you.",
        "try_again": "OK, let's try again.",
        "not_got": "Sorry, I didn't get your {label}.",
        "not_caught": "Sorry, I didn't catch that.",
        "not_saved": "Sorry, I could not save that answer.",
        "not_an_answer": "That doesn't answer the question.",
        "read_back": "I have {said}. Is that right?",
        "give_up": "{reason} Sorry, I still couldn't get your {label}. Let's stop here for "
        "now: your answers so far are saved, and we can continue another time.",
        "no_earlier": "There is no earlier question.",
        "go_back": "Sure, let's go back.",
        "closing": "Thank you, that's everything. Your answers are saved.",
        "already_complete": "This form is already complete. Thank you!",
        "busy": "This form is open in another call right now. Please try again later.",
        "unavailable": "Sorry, the form cannot be opened right now. Please try again later.",
    },
    "es": {
        "welcome_back": "¡Hola de nuevo! Seguimos donde lo dejamos.",
        "hello_title": "¡Hola! Vamos a rellenar el {title}.",
        "hello": "¡Hola! Tengo unas preguntas para usted.",
        "try_again": "De acuerdo, intentémoslo otra vez.",
        "not_got": "Perdón, no entendí su {label}.",
        "not_caught": "Perdón, no lo entendí.",
        "not_saved": "Perdón, no pude guardar esa respuesta.",
        "not_an_answer": "Eso no responde a la pregunta.",
        "read_back": "Tengo {said}. ¿Es correcto?",
        "give_up": "{reason} Perdón, sigo sin entender su {label}. Lo dejamos aquí por "
        "ahora: sus respuestas están guardadas y podemos seguir en otro momento.",
        "no_earlier": "No hay ninguna pregunta anterior.",
        "go_back": "Claro, volvamos atrás.",
        "closing": "Gracias, eso es todo. Sus respuestas están guardadas.",
        "already_complete": "Este formulario ya está completo. ¡Gracias!",
        "busy": "Este formulario está abierto en otra llamada ahora mismo. "
        "Inténtelo más tarde, por favor.",
        "unavailable": "Perdón, ahora mismo no se puede abrir el formulario. "
        "Inténtelo más tarde, por favor.",
    },
}


def line(key: str, language: str, **values: str) -> str:
    """The line ``key`` in ``language`` (English when it has none), filled in with ``values``."""
    base = language.casefold().replace("_", "-").split("-")[0]
    lines = LINES.get(base, LINES["en"])
    return lines.get(key, LINES["en"][key]).format(**values)
