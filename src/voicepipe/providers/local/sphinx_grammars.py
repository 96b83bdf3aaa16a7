"""JSGF grammars that narrow PocketSphinx to what a form field expects.

PocketSphinx's general language model mishears spelled letters, digits and
rare option words ("at yahoo dot com" as "it yet he got com"). When the
policy says what the next turn holds (:class:`~voicepipe.providers.base.STTHint`),
the utterance is decoded a second time with a small grammar of that kind of
answer: digits for a phone, letters, names (a general list,
:mod:`~voicepipe.providers.local.sphinx_names`) and domain words for an
e-mail, month names, days and years for a date, the field's own words for a
choice.

A grammar forces any sound into its words, so its reading is checked (see
``PocketSphinxSTT``): when the value will be read back to the caller, a
wrong reading costs a "no"; when it will not, the grammar's reading must
sound like, and score nearly as well as, the exact words the general model
heard (:func:`rival_for`), or the general transcript is kept.

English only: the bundled acoustic model and dictionary are US English.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

from voicepipe.providers.base import STTHint
from voicepipe.providers.local.sphinx_names import FIRST_NAMES, SURNAMES

__all__ = ["KINDS", "grammar_for", "rival_for"]


def _words(text: str) -> list[str]:
    return text.split()


_DIGITS = _words("zero oh one two three four five six seven eight nine")
_NUMBER_WORDS = _words(
    "ten eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen "
    "twenty thirty forty fifty sixty seventy eighty ninety hundred thousand"
)
_YES_NO = (
    "yes | yeah | yep | no | nope | right | correct | that's right | that is right | "
    "that's correct | wrong | not quite"
)
_LETTERS = _words("a b c d e f g h i j k l m n o p q r s t u v w x y z")
# Mail providers and other words of a host name, and the top-level domains that end
# one; no one- or two-letter labels ("me", "co"), which soak up any short sound
# ("at yahoo" heard as "a p at me").
_HOSTS = _words(
    "gmail googlemail yahoo hotmail outlook live msn icloud aol proton protonmail "
    "mail email gmx zoho yandex example company work office school university"
)
_TOP_LEVEL = _words("com org net edu gov uk info biz")
# The phrases around a choice, as whole phrases: free filler words ("i'd um for
# chicken one fine") let a choice grammar match any speech, a phone number too.
_CHOICE_BEFORE = (
    "[um | uh] [<have>] [the | a | an] | i'll go with [the] | let's go with [the] | "
    "go with [the] | i'll go for [the] | i choose [the] | i prefer [the] | my choice is [the]"
)
_CHOICE_HAVE = (
    "i'll have | i will have | i'd like | i would like | i want | i'll take | i will take | "
    "i'll get | can i have | can i get | i'd prefer | i would prefer | give me"
)
_CHOICE_AFTER = "please | for me | for me please | one | one please | option | thanks | thank you"

_WORD = re.compile(r"^[a-z][a-z']*$")


def _alternatives(words: Iterable[str]) -> str:
    return " | ".join(sorted(set(words)))


def _phone(hint: STTHint, known: Callable[[str], str | None]) -> str:
    return f"""
public <answer> = [<yes_no>] [<lead>] <item>+;
<lead> = my number is | my phone number is | the number is | it's | it is;
<item> = <digit> | double <digit> | triple <digit> | plus | {_alternatives(_NUMBER_WORDS)};
<digit> = {_alternatives(_DIGITS)};
"""


def _email(hint: STTHint, known: Callable[[str], str | None]) -> str:
    # Names (a general list, sphinx_names) and a choice's options, if any. A part of the
    # address (between separators) is a spelled run of letters, or one or two names
    # with at most one initial before them, each maybe with a number after: "s a r a
    # h", "j smith", "mike moore", "sarah twenty two". Letters and names do not
    # interleave ("a n anna", "mike a"), nor do digits sit inside a spelled run ("s a
    # r eight h"): those are how a looser grammar misheard.
    # Of names that sound alike ("brown", "braun"; "jay" and the letter "j") only
    # the first is kept: letters, then names in order of frequency. Sound cannot
    # tell them apart, so the commoner spelling is the better guess.
    sounds = {known(letter) for letter in _LETTERS}
    names = []
    for word in (*hint.options, *FIRST_NAMES, *SURNAMES):
        sound = known(word) if _WORD.match(word) else None
        if sound is not None and sound not in sounds:
            sounds.add(sound)
            names.append(word)
    return f"""
public <answer> = [<yes_no>] [<lead>] <local> at <domain> [all one word];
<lead> = my email is | my email address is | my address is | it's | it is | email;
<local> = <part> (<separator> <part>)*;
<separator> = dot | underscore | dash | hyphen;
<part> = <letter> <letter>+ [<number>] | [<letter>] <name> [<name>] [<number>] | <number>;
<number> = (<digit> | {_alternatives(_NUMBER_WORDS)})+;
<digit> = {_alternatives(_DIGITS)};
<letter> = {_alternatives(_LETTERS)};
<name> = {_alternatives(names)};
<domain> = <host> (dot <host>)* dot <top_level> [dot <top_level>];
<host> = {_alternatives(w for w in _HOSTS if known(w))};
<top_level> = {_alternatives(w for w in _TOP_LEVEL if known(w))};
"""


def _choice(hint: STTHint, known: Callable[[str], str | None]) -> str | None:
    options = []
    for option in hint.options:
        words = option.casefold().split()
        if not words or not all(_WORD.match(w) and known(w) for w in words):
            return None  # an option the dictionary cannot say: no grammar rather than a wrong one
        options.append(" ".join(words))
    if not options:
        return None
    return f"""
public <answer> = [<before>] <option> [<after>];
<before> = {_CHOICE_BEFORE};
<have> = {_CHOICE_HAVE};
<after> = {_CHOICE_AFTER};
<option> = {" | ".join(sorted(set(options)))};
"""


_UNITS = "one | two | three | four | five | six | seven | eight | nine"
_TEENS = (
    "ten | eleven | twelve | thirteen | fourteen | fifteen | sixteen | seventeen | "
    "eighteen | nineteen"
)
_ORDINAL_UNITS = "first | second | third | fourth | fifth | sixth | seventh | eighth | ninth"
_MONTHS = (
    "january | february | march | april | may | june | july | august | september | "
    "october | november | december"
)


def _date(hint: STTHint, known: Callable[[str], str | None]) -> str:
    # A day of the month (cardinal or ordinal), a month name and maybe a year, in the
    # orders people say them; a year in halves ("nineteen eighty six", "nineteen
    # hundred eighty six", "two thousand and five").
    return f"""
public <answer> = [<yes_no>] [<lead>] <date>;
<lead> = i was born on | i was born | born on | it's | it is | it was | on | my birthday is |
    my date of birth is;
<date> = <month> [the] <day> [[of] <year>] | [the] <day> of <month> [[of] <year>] |
    <month> <year>;
<month> = {_MONTHS};
<day> = <ordinal> | <cardinal>;
<ordinal> = {_ORDINAL_UNITS} | tenth | eleventh | twelfth | thirteenth | fourteenth |
    fifteenth | sixteenth | seventeenth | eighteenth | nineteenth | twentieth |
    twenty ({_ORDINAL_UNITS}) | thirtieth | thirty first;
<cardinal> = {_UNITS} | {_TEENS} | twenty [{_UNITS}] | thirty [one];
<year> = <century> <two_digits> | (<century> hundred | two thousand) [and] [<small>];
<century> = eighteen | nineteen | twenty;
<two_digits> = oh ({_UNITS}) | {_TEENS} | <tens> [{_UNITS}];
<small> = {_UNITS} | {_TEENS} | <tens> [{_UNITS}];
<tens> = twenty | thirty | forty | fifty | sixty | seventy | eighty | ninety;
"""


def _number(hint: STTHint, known: Callable[[str], str | None]) -> str:
    # A whole number below a million in words, with the few phrases around an amount or
    # an age ("i'm", "about", "years old"); said digit by digit too ("seven five").
    return f"""
public <answer> = [<yes_no>] [<lead>] <number> [<after>];
<lead> = [um | uh] [i'm | i am | it's | it is | about | around];
<after> = years | years old | years of age | please;
<number> = <below_thousand> [thousand [[and] <below_thousand>]] | <digit> <digit>+;
<below_thousand> = <below_hundred> | <unit> hundred [[and] <below_hundred>] | hundred;
<below_hundred> = {_UNITS} | {_TEENS} | <tens> [{_UNITS}] | zero;
<unit> = a | {_UNITS};
<tens> = twenty | thirty | forty | fifty | sixty | seventy | eighty | ninety;
<digit> = {_alternatives(_DIGITS)};
"""


KINDS: dict[str, Callable[[STTHint, Callable[[str], str | None]], str | None]] = {
    "phone": _phone,
    "email": _email,
    "choice": _choice,
    "date": _date,
    "number": _number,
}
"""The hint kinds a grammar is built for. Yes/no is left to the general
model, which hears it well (see docs/forms.md)."""


def grammar_for(hint: STTHint, known: Callable[[str], str | None]) -> str | None:
    """A JSGF grammar of the answers ``hint`` expects, or None when there is none
    (another kind, another language, options the dictionary cannot say).

    ``known`` gives a word's pronunciation in the decoder's dictionary (its
    ``lookup_word``), None for a word it lacks; words it lacks are left out
    (a grammar with an unknown word does not load).
    """
    build = KINDS.get(hint.kind)
    if build is None or not hint.language.casefold().startswith("en"):
        return None
    body = build(hint, known)
    if body is None:
        return None
    return f"#JSGF V1.0;\ngrammar {hint.kind};\n<yes_no> = {_YES_NO};\n{body}"


def rival_for(heard: str) -> str | None:
    """A grammar of exactly ``heard`` (the general model's words), to score the same
    sound against; None when a word cannot go in a grammar."""
    words = heard.split()
    if not words or not all(_WORD.match(w) for w in words):
        return None
    return f"#JSGF V1.0;\ngrammar heard;\npublic <heard> = {' '.join(words)};\n"
