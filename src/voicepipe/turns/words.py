"""Word lists for turn-taking, per language, as data.

``BACKCHANNELS``: what a listener says to show they are following, not to
take the turn ("uh-huh", "vale"). ``FILLERS``: sounds and phrases of someone
still thinking ("um", "o sea"). ``OPEN_ENDINGS``: words a finished sentence
rarely ends with (conjunctions, articles, prepositions, "is" as in "my email
is ..."). ``DIGITS``: spoken digits, for numbers dictated a few at a time.

Entries are lower case, without punctuation (a hyphen counts as a space:
"uh-huh" matches "uh huh"); several words make a phrase. Add a language by
adding a key; :func:`words_for` merges the languages you ask for.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

__all__ = ["BACKCHANNELS", "DIGITS", "FILLERS", "OPEN_ENDINGS", "words_for"]


def _phrases(text: str) -> frozenset[str]:
    """One phrase per comma-separated item, hyphens as spaces."""
    return frozenset(
        " ".join(item.replace("-", " ").split()) for item in text.split(",") if item.strip()
    )


BACKCHANNELS: Mapping[str, frozenset[str]] = {
    "en": _phrases(
        """uh-huh, uh huh, mm-hmm, mhm, mm, mmm, hm, hmm, um-hm, yeah, yep, yup, yes, ya,
        okay, ok, right, sure, alright, all right, i see, got it, gotcha, oh, ah, aha, wow,
        cool, nice, great, good, fine, true, exactly, indeed, totally, absolutely, really,
        go on, of course, makes sense, i know, oh okay, oh right, that's right, sounds good,
        perfect, lovely, uh, um"""
    ),
    "es": _phrases(
        """sí, si, vale, ajá, aja, ah, ya, claro, bueno, mhm, mm, mmm, eh, ok, okey, okay,
        entiendo, exacto, exactamente, de acuerdo, ya veo, cierto, perfecto, muy bien,
        bien, genial, venga, correcto, ah vale, ah ya, sí claro, claro que sí, uhum, ajam"""
    ),
}

FILLERS: Mapping[str, frozenset[str]] = {
    "en": _phrases(
        """um, uh, er, erm, hmm, mm, like, you know, i mean, well, let me see,
        let me think, let's see, hang on, just a sec, just a second, wait"""
    ),
    "es": _phrases(
        """eh, em, este, esto, pues, o sea, bueno, a ver, mmm, digamos, espera, un momento,
        déjame ver, déjame pensar"""
    ),
}

OPEN_ENDINGS: Mapping[str, frozenset[str]] = {
    "en": _phrases(
        """and, or, but, because, cause, than, which, if, when, while, the, a, an, my, your,
        our, their, of, to, for, with, at, is uh, email is, number is, name is, address is,
        phone is, code is, it's, dot, underscore, dash, plus, like, um, uh, also, at sign,
        and then, so that"""
    ),
    "es": _phrases(
        """y, e, o, u, pero, porque, que, cuando, mientras, el, la, los, las, un, unos, unas,
        mi, mis, tu, su, sus, nuestro, de, del, al, con, para, por, sobre, es, correo es,
        número es, nombre es, teléfono es, dirección es, punto, arroba, guion, también"""
    ),
}

DIGITS: Mapping[str, frozenset[str]] = {
    "en": _phrases("zero, oh, o, one, two, three, four, five, six, seven, eight, nine, double"),
    "es": _phrases("cero, uno, una, dos, tres, cuatro, cinco, seis, siete, ocho, nueve"),
}


def words_for(table: Mapping[str, frozenset[str]], languages: Iterable[str]) -> frozenset[str]:
    """The entries of ``table`` for ``languages`` merged; an unknown language is an error."""
    merged: set[str] = set()
    for language in languages:
        if language not in table:
            raise ValueError(
                f"no turn-taking words for language {language!r}; "
                f"known: {', '.join(sorted(table))} (add yours to voicepipe.turns.words)"
            )
        merged |= table[language]
    return frozenset(merged)
