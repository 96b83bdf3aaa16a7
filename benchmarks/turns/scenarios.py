"""The turn-taking scenarios, as data: what the caller does when, and what should come of it.

Times are milliseconds of the caller's audio from the start of the call.
``Say`` is speech with words (the fake STT reveals them as it goes), ``Noise``
is sound with no words (a cough, a door), ``Quiet`` is silence. ``turns`` are
the turns the policy should get, whole; ``cuts`` how many replies a real
barge-in should stop. ``pauses`` marks scenarios where the caller pauses
inside a turn (left out of the "no worse than today" end-of-turn median).
``splits`` is how many of ``turns`` the built-in detector is known to cut
short (its limits, kept in the suite so the figures stay honest).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SCENARIOS", "Noise", "Quiet", "Say", "Scenario"]


@dataclass(frozen=True, slots=True)
class Say:
    words: str
    ms: int


@dataclass(frozen=True, slots=True)
class Noise:
    ms: int


@dataclass(frozen=True, slots=True)
class Quiet:
    ms: int


Step = Say | Noise | Quiet

WEATHER = (
    "Tomorrow will be sunny in the morning. Clouds come in after lunch. "
    "Rain is likely after dark. Take an umbrella if you go out."
)
STORY = (
    "Once upon a time there was a small village by the sea. Every morning the "
    "fishermen went out before dawn. One day a storm came."
)
MENU = "Today we have tomato soup. Then grilled fish with rice. And apple pie for dessert."


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    caller: tuple[Step, ...]
    replies: tuple[str, ...] = ()
    turns: tuple[str, ...] = ()
    cuts: int = 0
    pauses: bool = False
    greeting: str | None = None
    farewell: str | None = None
    expecting: str | None = None  # Reply.expecting on every reply (a form asking for a phone)
    finish: str = "end_of_input"
    noise_or_backchannel: int = 0  # how many noises/backchannels land while a reply plays
    splits: int = 0  # false cut-offs the default settings are known to make here


SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        "plain questions",
        (Say("what time is it", 1000), Quiet(4500), Say("and what is the date", 1200), Quiet(4000)),
        replies=("It is noon.", "It is the first of May."),
        turns=("what time is it", "and what is the date"),
    ),
    Scenario(
        "backchannels during a reply",
        (
            Say("tell me about the weather", 1200),
            Quiet(1600),
            Say("uh-huh", 300),
            Quiet(1500),
            Say("yeah", 250),
            Quiet(1200),
            Say("mm-hmm okay", 400),
            Quiet(6000),
        ),
        replies=(WEATHER,),
        turns=("tell me about the weather",),
        noise_or_backchannel=3,
    ),
    Scenario(
        "backchannels in Spanish",
        (
            Say("qué tiempo hará mañana", 1200),
            Quiet(1600),
            Say("vale", 300),
            Quiet(1500),
            Say("sí sí", 350),
            Quiet(7000),
        ),
        replies=(WEATHER,),
        turns=("qué tiempo hará mañana",),
        noise_or_backchannel=2,
    ),
    Scenario(
        "a cough",
        (Say("what is on the menu today", 1200), Quiet(2000), Noise(160), Quiet(7000)),
        replies=(MENU,),
        turns=("what is on the menu today",),
        noise_or_backchannel=1,
    ),
    Scenario(
        "a door slams twice",
        (
            Say("what is on the menu today", 1200),
            Quiet(1800),
            Noise(400),
            Quiet(700),
            Noise(300),
            Quiet(7000),
        ),
        replies=(MENU,),
        turns=("what is on the menu today",),
        noise_or_backchannel=2,
    ),
    Scenario(
        "a real barge-in",
        (
            Say("tell me a story", 1000),
            Quiet(2500),
            Say("stop I need the address", 1500),
            Quiet(5000),
        ),
        replies=(STORY, "It is at ten Main Street."),
        turns=("tell me a story", "stop I need the address"),
        cuts=1,
    ),
    Scenario(
        "a barge-in that starts like a backchannel",
        (
            Say("tell me a story", 1000),
            Quiet(2500),
            Say("yeah but what about the dragon", 1800),
            Quiet(5000),
        ),
        replies=(STORY, "There was no dragon."),
        turns=("tell me a story", "yeah but what about the dragon"),
        cuts=1,
    ),
    Scenario(
        "a one-word barge-in",
        (Say("tell me a story", 1000), Quiet(2500), Say("stop", 400), Quiet(5000)),
        replies=(STORY, "Okay."),
        turns=("tell me a story", "stop"),
        cuts=1,
    ),
    Scenario(
        "a yes to a question while the reply goes on",
        (Say("can you book a table", 1200), Quiet(3300), Say("yes", 300), Quiet(4000)),
        replies=(
            "Shall I book it for you? I can also check other dates and times if you like.",
            "Booked.",
        ),
        turns=("can you book a table", "yes"),
        cuts=1,
    ),
    Scenario(
        "pauses inside a phone number",
        (
            Say("my number is five five five", 1800),
            Quiet(900),
            Say("one two three four", 1200),
            Quiet(4000),
        ),
        replies=("Thanks, I have it.",),
        turns=("my number is five five five one two three four",),
        pauses=True,
    ),
    Scenario(
        "a phone number asked for, in three groups",
        (
            Quiet(3000),
            Say("six one two", 1000),
            Quiet(1300),
            Say("three four five", 1000),
            Quiet(1300),
            Say("six seven eight", 1000),
            Quiet(4000),
        ),
        replies=("Got it.",),
        greeting="What is your phone number?",
        expecting="phone",
        turns=("six one two three four five six seven eight",),
        pauses=True,
    ),
    Scenario(
        "an e-mail address after a pause",
        (Say("my email is", 900), Quiet(1000), Say("ana at example dot com", 1500), Quiet(4000)),
        replies=("Thank you.",),
        turns=("my email is ana at example dot com",),
        pauses=True,
    ),
    Scenario(
        "a hesitation before the last word",
        (Say("I would like a table for", 1400), Quiet(800), Say("four", 300), Quiet(4000)),
        replies=("A table for four, done.",),
        turns=("I would like a table for four",),
        pauses=True,
    ),
    Scenario(
        "thinking aloud with a filler",
        (Say("I think I want um", 1200), Quiet(900), Say("the vegetarian one", 900), Quiet(4000)),
        replies=("Good choice.",),
        turns=("I think I want um the vegetarian one",),
        pauses=True,
    ),
    Scenario(
        "an afterthought after a finished clause",
        (Say("I want to fly to Paris", 1400), Quiet(900), Say("on Monday", 600), Quiet(4000)),
        replies=("When would you like to fly?", "Monday, noted."),
        turns=("I want to fly to Paris on Monday",),
        pauses=True,
        # The clause sounds finished, so the turn ends and the reply starts; the
        # afterthought then cuts it as a new turn.
        cuts=1,
        splits=1,
    ),
    Scenario(
        "a pause before the last words, in Spanish",
        (
            Say("quiero reservar una mesa para", 1600),
            Quiet(900),
            Say("cuatro personas", 800),
            Quiet(4000),
        ),
        replies=("Una mesa para cuatro, hecho.",),
        turns=("quiero reservar una mesa para cuatro personas",),
        pauses=True,
    ),
    Scenario(
        "a short code read out in one go",
        (Say("the code is four two seven", 1500), Quiet(4000)),
        replies=("Code accepted.",),
        turns=("the code is four two seven",),
    ),
    Scenario(
        "trailing off with and",
        (Say("I liked the soup and", 1300), Quiet(4000)),
        replies=("Glad to hear it.",),
        turns=("I liked the soup and",),
    ),
    Scenario(
        "talking over the greeting",
        (Quiet(900), Say("one large margherita please", 1500), Quiet(5000)),
        greeting="Hello and welcome to Pizza Place. What would you like to order today?",
        replies=("One large margherita, coming up.",),
        turns=("one large margherita please",),
        cuts=1,
    ),
    Scenario(
        "a backchannel over the greeting",
        (Quiet(1200), Say("okay", 300), Quiet(6000)),
        greeting="Hello and welcome to Pizza Place. What would you like to order today?",
        noise_or_backchannel=1,
    ),
    Scenario(
        "a caller who says nothing",
        (Quiet(12000),),
        greeting="Hello? Is anyone there?",
    ),
    Scenario(
        "goodbye with a farewell",
        (Say("that is all thanks bye", 1400), Quiet(4000)),
        farewell="Goodbye, have a nice day.",
        turns=("that is all thanks bye",),
        finish="goodbye",
    ),
    Scenario(
        "goodbye without a farewell",
        (Say("that is all thanks bye", 1400), Quiet(2000)),
        turns=("that is all thanks bye",),
        finish="goodbye",
    ),
)
