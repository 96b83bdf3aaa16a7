"""One of a field's choices, matched fuzzily against what was said (``rapidfuzz``).

"the vegetarian one please" matches "vegetarian"; a recogniser's "veggie
tarian" still does. When two choices match about as well, there is no value:
the caller is asked, or the LLM picks, never a guess.
"""

from __future__ import annotations

from collections.abc import Sequence

from voicepipe.forms.spoken._text import words

__all__ = ["choice_scores", "choices"]

_ACCEPT = 85.0  # a match this good is the answer...
_MARGIN = 10.0  # ...when no other choice comes within this of it


def choice_scores(text: str, options: Sequence[str]) -> list[tuple[float, str]]:
    """(score 0-100, choice) for every option, best first."""
    from rapidfuzz import fuzz

    said = " ".join(words(text))
    scored = []
    for option in options:
        name = " ".join(words(option))
        if not name or not said:
            scored.append((0.0, option))
        elif f" {name} " in f" {said} ":
            scored.append((100.0, option))
        else:
            scored.append((float(fuzz.partial_ratio(name, said)), option))
    scored.sort(key=lambda s: -s[0])
    return scored


def choices(text: str, options: Sequence[str]) -> list[str]:
    """The one choice ``text`` names, as a one-item list, or [] if none stands out."""
    scored = choice_scores(text, options)
    if not scored or scored[0][0] < _ACCEPT:
        return []
    if len(scored) > 1 and scored[1][0] > scored[0][0] - _MARGIN:
        return []
    return [scored[0][1]]
