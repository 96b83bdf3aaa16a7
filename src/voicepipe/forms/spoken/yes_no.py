"""Yes and no in their many forms ("yeah", "that's right", "no, it's...", "sí", "claro")."""

from __future__ import annotations

from voicepipe.forms.spoken._text import _WORD, fold, words
from voicepipe.forms.spoken.languages import EN, LANGUAGES, Language

__all__ = ["strip_no", "yes_no"]

_FILLER = frozenset(["uh", "um", "er", "eh", "well", "oh", "and", "so", "pues", "bueno", "ah"])
# A one-word yes or no counts in every session, whatever its language: callers
# switch to their own for a yes ("sí", "oui", "ja"). French and German have no
# form words (yet), just these.
_ANY_YES = frozenset(["oui", "exactement", "ja", "genau", "richtig"]).union(
    *(words.yes for words in LANGUAGES.values())
)
_ANY_NO = frozenset(["non", "nein", "falsch"]).union(*(words.no for words in LANGUAGES.values()))


def yes_no(text: str, lang: Language) -> bool | None:
    """True for a yes, False for a no, None when it is neither (or both).

    English phrases count in every language (people say "OK" everywhere), and
    so does a one-word yes or no of any language ("sí", "oui", "ja", "nein").
    This is the one yes/no reader: the form's read-backs and boolean fields
    both use it.
    """
    said = [w for w in words(text) if w not in _FILLER]
    if not said:
        return None
    joined = " " + " ".join(said) + " "
    langs = (lang,) if lang is EN else (lang, EN)
    no = any(f" {p} " in joined for x in langs for p in x.no_phrases) or said[0] in _ANY_NO
    no = no or any(w in ("not", "isn't", "wrong", "incorrect", "incorrecto") for w in said)
    yes = any(f" {p} " in joined for x in langs for p in x.yes_phrases) or said[0] in _ANY_YES
    if no:
        return False
    return True if yes else None


def strip_no(text: str, lang: Language) -> str:
    """``text`` without the leading no of a correction ("no, it's five" -> "it's five")."""
    rest = 0  # where the text after the leading no-words and fillers starts
    for match in _WORD.finditer(text):  # the words as :func:`words` reads them, in place
        word = fold(match.group())
        if word not in lang.no and word not in EN.no and word not in _FILLER:
            break
        rest = match.end()
    # Cut at the end of the last word dropped, never at a space: "no,sixty one"
    # has no space after its "no", and cutting at one dropped "sixty".
    return text[rest:].lstrip(" ,.;:-—–…!?") if rest else text
