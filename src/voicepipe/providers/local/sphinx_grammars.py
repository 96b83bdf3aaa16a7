"""JSGF grammars that narrow PocketSphinx to what a form field expects.

PocketSphinx's general language model mishears spelled letters, digits and
rare option words ("at yahoo dot com" as "it yet he got com"). When the
policy says what the next turn holds (:class:`~voicepipe.providers.base.STTHint`),
the utterance is decoded a second time with a small grammar of that kind of
answer: digits for a phone, letters, names and domain words for an e-mail,
the field's own words for a choice.

A grammar forces any sound into its words, so its reading is checked (see
``PocketSphinxSTT``): when the value will be read back to the caller, a
wrong reading costs a "no"; when it will not, the grammar's reading must
score nearly as well as the exact words the general model heard
(:func:`rival_for`), or the general transcript is kept.

English only: the bundled acoustic model and dictionary are US English.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

from voicepipe.providers.base import STTHint

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
# Providers and top-level domains; no one- or two-letter labels ("me", "co"), which
# soak up any short sound ("at yahoo" heard as "a p at me").
_DOMAINS = _words(
    "gmail googlemail yahoo hotmail outlook live msn icloud aol proton protonmail "
    "mail email gmx zoho yandex example company work office school university "
    "com org net edu gov uk info biz"
)
# Common US first names and surnames (well-known frequency lists), so that an
# e-mail's name part is in the grammar; other names are spelled or come from
# what the general model heard.
_NAMES = _words(
    "james john robert michael william david richard joseph thomas charles christopher "
    "daniel matthew anthony mark donald steven paul andrew joshua kenneth kevin brian "
    "george timothy ronald edward jason jeffrey ryan jacob gary nicholas eric jonathan "
    "stephen larry justin scott brandon benjamin samuel gregory alexander frank patrick "
    "raymond jack dennis jerry tyler aaron jose adam nathan henry douglas zachary peter "
    "kyle noah ethan jeremy walter christian keith roger terry austin sean gerald carl "
    "harold dylan arthur lawrence jordan jesse bryan billy bruce gabriel joe logan alan "
    "juan albert willie elijah wayne randy vincent mason roy ralph bobby russell bradley "
    "philip eugene mike tom bill bob dave jim steve chris dan matt tony nick alex sam ben "
    "mary patricia jennifer linda elizabeth barbara susan jessica sarah karen lisa nancy "
    "betty sandra margaret ashley kimberly emily donna michelle carol amanda melissa "
    "deborah stephanie dorothy rebecca sharon laura cynthia amy kathleen angela shirley "
    "brenda emma anna pamela nicole samantha katherine christine helen debra rachel "
    "carolyn janet maria catherine heather diane olivia julie joyce victoria ruth "
    "virginia lauren kelly christina joan evelyn judith andrea hannah megan cheryl "
    "jacqueline martha madison teresa gloria sara janice ann kathryn abigail sophia "
    "frances jean alice judy isabella julia grace amber denise danielle marilyn beverly "
    "charlotte natalie theresa diana brittany doris kayla alexis lori marie kate jane "
    "smith johnson williams brown jones garcia miller davis rodriguez martinez "
    "hernandez lopez gonzalez wilson anderson taylor moore jackson martin lee perez "
    "thompson white harris sanchez clark ramirez lewis robinson walker young allen king "
    "wright torres nguyen hill flores green adams nelson baker hall rivera campbell "
    "mitchell carter roberts gomez phillips evans turner diaz parker cruz edwards "
    "collins reyes stewart morris morales murphy cook rogers gutierrez ortiz morgan "
    "cooper peterson bailey reed howard ramos kim cox ward richardson watson brooks "
    "chavez wood bennett gray mendoza ruiz hughes price alvarez castillo sanders patel "
    "myers long ross foster jimenez powell jenkins perry sullivan bell coleman butler "
    "henderson barnes fisher vasquez simmons romero patterson hamilton graham reynolds "
    "griffin wallace west cole hayes bryant herrera gibson ellis tran medina aguilar "
    "stevens murray ford castro marshall owens harrison fernandez mcdonald woods "
    "washington kennedy wells vargas chen freeman webb tucker guzman burns crawford "
    "olson simpson porter hunter gordon mendez silva shaw snyder dixon munoz hunt hicks "
    "holmes palmer wagner black robertson boyd rose stone salazar fox warren mills "
    "meyer rice schmidt garza daniels ferguson nichols stephens soto weaver gardner "
    "payne grant dunn"
)
_CHOICE_BEFORE = (
    "the | a | an | i'll | i | will | have | take | would | like | want | go | with | for | "
    "um | uh | i'd | please | let's | me | my | is | it's | prefer | choose"
)
_CHOICE_AFTER = "please | one | for | me | thanks | thank | you | option | is | fine"

_WORD = re.compile(r"^[a-z][a-z']*$")


def _alternatives(words: Iterable[str]) -> str:
    return " | ".join(sorted(set(words)))


def _phone(hint: STTHint, known: Callable[[str], bool]) -> str:
    return f"""
public <answer> = [<yes_no>] [<lead>] <item>+;
<lead> = my number is | my phone number is | the number is | it's | it is;
<item> = <digit> | double <digit> | triple <digit> | plus | {_alternatives(_NUMBER_WORDS)};
<digit> = {_alternatives(_DIGITS)};
"""


def _email(hint: STTHint, known: Callable[[str], bool]) -> str:
    words = [w for w in (*_NAMES, *_LETTERS, *hint.options) if known(w)]
    return f"""
public <answer> = [<yes_no>] [<lead>] <local> at <domain> [all one word];
<lead> = my email is | my email address is | my address is | it's | it is | email;
<local> = <part> (<part> | <separator> <part>)*;
<separator> = dot | underscore | dash | hyphen;
<part> = {_alternatives(words)} | {_alternatives(_DIGITS + _NUMBER_WORDS)};
<domain> = <label> (dot <label>)+;
<label> = {_alternatives(w for w in _DOMAINS if known(w))};
"""


def _choice(hint: STTHint, known: Callable[[str], bool]) -> str | None:
    options = []
    for option in hint.options:
        words = option.casefold().split()
        if not words or not all(_WORD.match(w) and known(w) for w in words):
            return None  # an option the dictionary cannot say: no grammar rather than a wrong one
        options.append(" ".join(words))
    if not options:
        return None
    return f"""
public <answer> = [<before>] [<before>] [<before>] [<before>] <option> [<after>] [<after>];
<before> = {_CHOICE_BEFORE};
<after> = {_CHOICE_AFTER};
<option> = {" | ".join(sorted(set(options)))};
"""


KINDS: dict[str, Callable[[STTHint, Callable[[str], bool]], str | None]] = {
    "phone": _phone,
    "email": _email,
    "choice": _choice,
}
"""The hint kinds a grammar is built for. Numbers, dates and yes/no are left
to the general model, which hears them well (see docs/forms.md)."""


def grammar_for(hint: STTHint, known: Callable[[str], bool]) -> str | None:
    """A JSGF grammar of the answers ``hint`` expects, or None when there is none
    (another kind, another language, options the dictionary cannot say).

    ``known`` tells whether the decoder's dictionary has a word; words it
    lacks are left out (a grammar with an unknown word does not load).
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
