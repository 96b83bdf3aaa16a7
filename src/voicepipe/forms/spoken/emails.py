"""E-mail addresses as people say them.

"juan dot perez at gmail dot com", "j u a n underscore p at hotmail dot com",
"arroba", "punto", "all one word": the symbols' spoken names come from the
language's data, spelled letters and words are joined, and numbers in words
become digits. Words that introduce the answer ("my e-mail is", "no, it's")
are left out. ``email-validator`` (through
:func:`voicepipe.forms.validate_value`) has the last word.
"""

from __future__ import annotations

import re

from voicepipe.forms.spoken._text import digits_text, fold
from voicepipe.forms.spoken.languages import Language

__all__ = ["email_address", "spoken_symbols"]

_WRITTEN = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_TOKEN = re.compile(r"[^\W_]+(?:'[^\W_]+)?|[@._+-]")


def spoken_symbols(text: str, lang: Language) -> list[str]:
    """The transcript as pieces: words, digits and the symbols their names stand for."""
    folded = fold(text)
    for phrase in sorted(lang.ignore, key=len, reverse=True):
        folded = re.sub(rf"\b{re.escape(phrase)}\b", " ", folded)
    folded = digits_text(folded, lang.code)
    tokens = _TOKEN.findall(folded)
    pieces: list[str] = []
    names = sorted(
        ((name.split(), symbol) for name, symbol in lang.symbols.items()),
        key=lambda item: -len(item[0]),
    )
    index = 0
    while index < len(tokens):
        for name, symbol in names:
            if tokens[index : index + len(name)] == name:
                pieces.append(symbol)
                index += len(name)
                break
        else:
            token = tokens[index]
            # A dot right after a spelled letter ("j." from the recogniser) is not a symbol.
            if token == "." and pieces and len(pieces[-1]) == 1 and pieces[-1].isalpha():
                index += 1
                continue
            pieces.append(token)
            index += 1
    return pieces


def email_address(text: str, lang: Language) -> list[str]:
    """The e-mail address said in ``text`` (a one-item list), or [] if none is clear."""
    written = {m.group(0).strip(".").casefold() for m in _WRITTEN.finditer(text)}
    if written:
        return sorted(written) if len(written) == 1 else []
    pieces = spoken_symbols(text, lang)
    if pieces.count("@") != 1:
        return []
    at = pieces.index("@")
    local: list[str] = []
    for piece in reversed(pieces[:at]):
        if piece in lang.intro and not (local and local[-1] in "._-+"):
            break
        local.append(piece)
    local.reverse()
    domain: list[str] = []
    for piece in pieces[at + 1 :]:
        if piece in lang.intro and not (domain and domain[-1] == "."):
            break
        domain.append(piece)
    name = "".join(local).strip("._-")
    host = "".join(domain).strip(".-")
    if not name or "." not in host:
        return []
    return [f"{name}@{host}"]
