"""The words each language uses for spoken values, as data.

A language is one :class:`Language` entry in :data:`LANGUAGES`: the words for
yes and no, the spoken names of e-mail symbols, the phone words ("double",
"oh"), month names and the filler that introduces an answer. Numbers in words
are read by ``text2num``, which knows English, Spanish, French, German,
Italian, Portuguese, Dutch and Danish, so adding one of those languages here
is a matter of words, not code.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["EN", "ES", "LANGUAGES", "Language", "language"]


@dataclass(frozen=True, slots=True)
class Language:
    """The spoken-value words of one language (all lower case).

    ``symbols`` maps a spoken phrase (one or more words) to the e-mail
    character it names; ``ignore`` lists phrases that carry no value ("all
    one word"). ``repeat`` maps "double"/"triple" to how many times the next
    digit is said. ``zero_words`` are said for the digit 0 inside numbers
    ("oh"). ``months`` are the twelve month names, each with its spoken
    variants. ``day_first`` says how "3/4/1990" is read. ``digit_homophones``
    are words a recogniser writes for a digit it heard ("to" for "two"), read
    as that digit only next to other digits of a phone number. ``context``
    are the words that may surround a number or a date without making the
    answer unclear ("i'm ... years old", "the ... of ..."); any other word
    next to a number is a reason to read the value back before storing it.
    ``negations`` (with ``no``) turn a choice said into one refused ("I don't
    want fish"): a choice said with one is read back, never stored as it is.
    """

    code: str
    yes: frozenset[str]
    no: frozenset[str]
    yes_phrases: tuple[str, ...]
    no_phrases: tuple[str, ...]
    symbols: dict[str, str]
    ignore: tuple[str, ...]
    intro: frozenset[str]
    plus: frozenset[str]
    repeat: dict[str, int]
    zero_words: frozenset[str]
    months: tuple[tuple[str, ...], ...]
    day_first: bool
    digit_homophones: dict[str, str]
    context: frozenset[str] = frozenset()
    negations: frozenset[str] = frozenset()


EN = Language(
    code="en",
    yes=frozenset(
        [
            "yes",
            "yeah",
            "yep",
            "yup",
            "ya",
            "correct",
            "right",
            "sure",
            "exactly",
            "affirmative",
            "ok",
            "okay",
            "absolutely",
            "definitely",
            "indeed",
            "true",
        ]
    ),
    no=frozenset(["no", "nope", "nah", "wrong", "incorrect", "negative", "false"]),
    yes_phrases=(
        "that's right",
        "that is right",
        "that's correct",
        "that is correct",
        "it is",
        "of course",
        "i do",
        "i am",
        "sounds good",
        "go ahead",
        "all good",
    ),
    no_phrases=(
        "not right",
        "not correct",
        "that's not",
        "that is not",
        "isn't right",
        "isn't correct",
        "i don't",
        "i do not",
        "i'm not",
        "i am not",
        "not really",
        "of course not",
    ),
    symbols={
        "at": "@",
        "at sign": "@",
        "dot": ".",
        "period": ".",
        "point": ".",
        "underscore": "_",
        "under score": "_",
        "dash": "-",
        "hyphen": "-",
        "minus": "-",
        "plus": "+",
    },
    ignore=("all one word", "one word", "all lowercase", "lower case", "all together", "no spaces"),
    intro=frozenset(
        [
            "my",
            "email",
            "e-mail",
            "mail",
            "address",
            "is",
            "it's",
            "its",
            "it",
            "is",
            "sure",
            "yes",
            "yeah",
            "ok",
            "okay",
            "so",
            "no",
            "that's",
            "please",
            "thanks",
            "thank",
            "you",
            "the",
            "um",
            "uh",
            "er",
            "well",
        ]
    ),
    plus=frozenset(["plus"]),
    repeat={"double": 2, "triple": 3},
    zero_words=frozenset(["oh", "o", "zero"]),
    months=(
        ("january", "jan"),
        ("february", "feb"),
        ("march", "mar"),
        ("april", "apr"),
        ("may",),
        ("june", "jun"),
        ("july", "jul"),
        ("august", "aug"),
        ("september", "sep", "sept"),
        ("october", "oct"),
        ("november", "nov"),
        ("december", "dec"),
    ),
    day_first=False,
    digit_homophones={"to": "2", "too": "2", "for": "4", "fore": "4", "won": "1", "ate": "8"},
    negations=frozenset(
        [
            *("not", "don't", "dont", "doesn't", "isn't", "wouldn't", "won't", "can't"),
            *("never", "without", "except", "but", "nothing", "neither", "nor"),
        ]
    ),
    context=frozenset(
        [
            "i",
            "i'm",
            "im",
            "am",
            "am",
            "years",
            "year",
            "old",
            "age",
            "my",
            "is",
            "it's",
            "its",
            "it",
            "was",
            "born",
            "on",
            "the",
            "of",
            "in",
            "um",
            "uh",
            "er",
            "ah",
            "oh",
            "well",
            "so",
            "and",
            "just",
            "about",
            "turned",
            "i'll",
            "be",
        ]
    ),
)

ES = Language(
    code="es",
    yes=frozenset(
        [
            "sí",
            "si",
            "claro",
            "correcto",
            "exacto",
            "vale",
            "afirmativo",
            "efectivamente",
            "cierto",
            "bueno",
            "dale",
            "perfecto",
        ]
    ),
    no=frozenset(["no", "incorrecto", "negativo", "falso", "tampoco"]),
    yes_phrases=("así es", "eso es", "está bien", "esta bien", "de acuerdo", "por supuesto"),
    no_phrases=("no es", "no está bien", "está mal", "esta mal", "para nada"),
    symbols={
        "arroba": "@",
        "punto": ".",
        "guion bajo": "_",
        "guión bajo": "_",
        "barra baja": "_",
        "subrayado": "_",
        "guion": "-",
        "guión": "-",
        "menos": "-",
        "más": "+",
        "mas": "+",
    },
    ignore=("todo junto", "todo en minúsculas", "en minúsculas", "sin espacios", "todo seguido"),
    intro=frozenset(
        [
            "mi",
            "correo",
            "electrónico",
            "electronico",
            "email",
            "e-mail",
            "es",
            "sí",
            "si",
            "bueno",
            "pues",
            "vale",
            "no",
            "dirección",
            "direccion",
            "gracias",
            "por",
            "favor",
            "el",
            "la",
            "de",
            "um",
            "eh",
        ]
    ),
    plus=frozenset(["más", "mas"]),
    repeat={"doble": 2, "triple": 3},
    zero_words=frozenset(["cero"]),
    months=(
        ("enero",),
        ("febrero",),
        ("marzo",),
        ("abril",),
        ("mayo",),
        ("junio",),
        ("julio",),
        ("agosto",),
        ("septiembre", "setiembre"),
        ("octubre",),
        ("noviembre",),
        ("diciembre",),
    ),
    day_first=True,
    digit_homophones={},
    negations=frozenset(["sin", "excepto", "menos", "nunca", "ni", "nada", "salvo"]),
    context=frozenset(
        [
            "tengo",
            "años",
            "año",
            "soy",
            "mi",
            "edad",
            "es",
            "de",
            "del",
            "el",
            "la",
            "en",
            "nací",
            "naci",
            "y",
            "um",
            "eh",
            "pues",
            "bueno",
            "ya",
            "cumplí",
            "cumpli",
        ]
    ),
)

LANGUAGES: dict[str, Language] = {lang.code: lang for lang in (EN, ES)}


def language(code: str) -> Language:
    """The words of ``code`` ("es", "es-MX", "EN_us"); English for a language not listed."""
    base = code.casefold().replace("_", "-").split("-")[0]
    return LANGUAGES.get(base, EN)
