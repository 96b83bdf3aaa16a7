"""Yes and no in their many forms ("yeah", "that's right", "no, it's...", "sí", "claro")."""

from __future__ import annotations

from voicepipe.forms.spoken._text import words
from voicepipe.forms.spoken.languages import EN, Language

__all__ = ["strip_no", "yes_no"]

_FILLER = frozenset(["uh", "um", "er", "eh", "well", "oh", "and", "so", "pues", "bueno", "ah"])


def yes_no(text: str, lang: Language) -> bool | None:
    """True for a yes, False for a no, None when it is neither (or both).

    English words count in every language: people say "OK" everywhere.
    """
    said = [w for w in words(text) if w not in _FILLER]
    if not said:
        return None
    joined = " " + " ".join(said) + " "
    langs = (lang,) if lang is EN else (lang, EN)
    no = any(f" {p} " in joined for x in langs for p in x.no_phrases) or said[0] in (
        lang.no | EN.no
    )
    no = no or any(w in ("not", "isn't", "wrong", "incorrect", "incorrecto") for w in said)
    yes = any(f" {p} " in joined for x in langs for p in x.yes_phrases) or said[0] in (
        lang.yes | EN.yes
    )
    if no:
        return False
    return True if yes else None


def strip_no(text: str, lang: Language) -> str:
    """``text`` without the leading no of a correction ("no, it's five" -> "it's five")."""
    said = words(text)
    skip = 0
    while skip < len(said) and (said[skip] in lang.no | EN.no or said[skip] in _FILLER):
        skip += 1
    if not skip:
        return text
    # Drop the same number of words from the original text, keeping its symbols.
    rest = text.strip()
    for _ in range(skip):
        parts = rest.split(None, 1)
        rest = parts[1] if len(parts) > 1 else ""
    return rest.lstrip(" ,.;:-")
