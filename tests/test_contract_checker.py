"""voicepipe.testing flags each broken rule, with the events at fault, and passes good sessions."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from voicepipe import (
    AssistantDelta,
    AssistantReply,
    AudioChunk,
    AudioFormat,
    ErrorEvent,
    Event,
    Finish,
    Interrupted,
    Message,
    Metrics,
    Session,
    UserTurn,
)
from voicepipe.events import Paused, Resumed, ToolCallEvent, ToolResultEvent
from voicepipe.providers.fake import FakeLLM, LLMCall
from voicepipe.testing import (
    RULES,
    SessionRecord,
    Violation,
    assert_session_ok,
    check_session,
    rule,
)

FMT = AudioFormat(24000)
START = Session(session_id="s", input_format=AudioFormat(), output_format=FMT)
AUDIO = AudioChunk(audio=b"\0\0", format=FMT)


def said(*pieces: str) -> list[Event]:
    out: list[Event] = []
    for piece in pieces:
        out += [AssistantDelta(content=piece), AUDIO]
    return out


GOOD: list[Event] = [
    START,
    UserTurn(content="hi"),
    *said("Hello.", " How are you?"),
    AssistantReply(content="Hello. How are you?"),
    Metrics(turn=1),
    UserTurn(content="stop"),
    *said("Well."),
    Paused(),
    Interrupted(content="Well."),
    AssistantReply(content="Well.", interrupted=True),
    Metrics(turn=2),
    Finish(reason="end_of_input"),
]


def rules_broken(events: list[Event], **options: object) -> set[str]:
    return {v.rule for v in check_session(events, **options)}  # type: ignore[arg-type]


def test_a_good_session_passes() -> None:
    assert check_session(GOOD) == []
    assert_session_ok(GOOD[:5], complete=False)


@pytest.mark.parametrize(
    ("events", "broken"),
    [
        ([UserTurn(content="hi"), Finish(reason="x")], "session-first-finish-last"),
        ([START, UserTurn(content="hi")], "session-first-finish-last"),  # no finish
        ([START, Finish(reason="x"), UserTurn(content="late")], "session-first-finish-last"),
        (
            [START, *said("One."), Interrupted(content="One."), AUDIO, Finish(reason="x")],
            "nothing-after-interrupted",
        ),
        (
            [
                START,
                *said("One.", " Two."),
                AssistantReply(content="One. Two. Three."),
                Finish(reason="x"),
            ],
            "assistant-is-what-was-spoken",
        ),
        (
            [
                START,
                *said("One."),
                Interrupted(content="One. Two."),
                AssistantReply(content="One. Two.", interrupted=True),
                Finish(reason="x"),
            ],
            "assistant-is-what-was-spoken",
        ),
        (
            [
                START,
                *said("Hello there."),
                Interrupted(content="Hel"),
                AssistantReply(content="Hel", interrupted=True),
                Finish(reason="x"),
            ],
            "assistant-is-what-was-spoken",
        ),  # not at a word boundary
        (
            [
                START,
                *said("One."),
                Paused(),
                AUDIO,
                Resumed(),
                AssistantReply(content="One."),
                Finish(reason="x"),
            ],
            "paused-ends-in-resumed-or-interrupted",
        ),
        (
            [START, *said("One."), Paused(), AssistantReply(content="One."), Finish(reason="x")],
            "paused-ends-in-resumed-or-interrupted",
        ),
        (
            [START, AUDIO, *said("One."), AssistantReply(content="One."), Finish(reason="x")],
            "audio-follows-its-text",
        ),
        (
            [START, UserTurn(content="a"), Metrics(turn=1), Metrics(turn=1), Finish(reason="x")],
            "each-turn-answered-once",
        ),
        (
            [
                START,
                ErrorEvent(stage="stt", message="gone", recoverable=False),
                UserTurn(content="more"),
                Finish(reason="error"),
            ],
            "fatal-error-ends-the-session",
        ),
        (
            [
                START,
                ErrorEvent(stage="stt", message="gone", recoverable=False),
                Finish(reason="end_of_input"),
            ],
            "fatal-error-ends-the-session",
        ),
        (
            [
                START,
                *said("One."),
                Interrupted(content="One."),
                ErrorEvent(stage="llm", message="BrokenResourceError: "),
                AssistantReply(content="One.", interrupted=True),
                Finish(reason="x"),
            ],
            "errors-are-real-failures",
        ),
    ],
)
def test_each_rule_flags_its_breach(events: list[Event], broken: str) -> None:
    assert broken in rules_broken(events)
    with pytest.raises(AssertionError, match=broken):
        assert_session_ok(events)


CALL = ToolCallEvent(id="c1", name="lookup", arguments={})
RESULT = ToolResultEvent(id="c1", name="lookup", ok=True, content="x")


@pytest.mark.parametrize(
    "events",
    [
        [START, CALL, Finish(reason="x")],  # never answered
        [START, RESULT, Finish(reason="x")],  # a result without its call
        [START, CALL, RESULT, RESULT, Finish(reason="x")],  # answered twice
        [START, CALL, CALL, RESULT, Finish(reason="x")],  # one id called twice
    ],
)
def test_every_tool_call_gets_exactly_one_result(events: list[Event]) -> None:
    assert "tool-calls-answered" in rules_broken(events)
    assert check_session([START, CALL, RESULT, Finish(reason="x")]) == []
    assert_session_ok([START, CALL], complete=False)  # a prefix: the result may still come


def test_a_tool_call_never_ends_in_silence() -> None:
    turn, done, end = UserTurn(content="weather?"), Metrics(turn=1), Finish(reason="x")
    answered: list[Event] = [START, turn, CALL, RESULT, *said("Sunny.")]
    answered.append(AssistantReply(content="Sunny."))
    assert check_session([*answered, done, end]) == []
    silent: list[Event] = [START, turn, CALL, RESULT, done, UserTurn(content="hello?")]
    silent += said("Hi.")
    assert rules_broken([*silent, AssistantReply(content="Hi."), Metrics(turn=2), end]) == {
        "tool-result-is-followed"
    }
    # The session ending right after (end_call, a hang-up) is not silence; a cut,
    # an error or a prefix of the session is not either.
    assert check_session([START, turn, CALL, RESULT, done, end]) == []
    cut: list[Event] = [START, turn, CALL, Interrupted(content=""), RESULT]
    assert check_session([*cut, AssistantReply(content="", interrupted=True), done, end]) == []
    failed: list[Event] = [START, turn, CALL, RESULT, ErrorEvent(stage="llm", message="x"), done]
    assert check_session([*failed, end]) == []
    assert check_session([START, turn, CALL, RESULT, done], complete=False) == []


def test_words_heard_before_a_tool_call_are_a_piece_of_the_reply() -> None:
    llm = FakeLLM()
    earlier = [Message("user", "weather?"), Message("assistant", "Let me look.")]
    llm.calls.append(LLMCall([*earlier, Message("user", "thanks")]))
    reply = AssistantReply(content="Let me look. Sunny.")
    events = [START, *said("Let me look.", " Sunny."), reply, Finish(reason="x")]
    assert check_session(events, llm=llm) == []
    llm.calls.append(LLMCall([*earlier[:1], Message("assistant", "Unheard."), earlier[0]]))
    assert rules_broken(events, llm=llm) == {"history-holds-what-was-heard"}


def test_the_reply_in_progress_is_the_models_own_work() -> None:
    # A round of tool calls in the reply being made: its text may not be spoken yet
    # (or the TTS failed on it); the next round's request still carries it.
    llm = FakeLLM()
    llm.calls.append(LLMCall([Message("user", "weather?"), Message("assistant", "Not yet.")]))
    events = [START, *said("Sunny."), AssistantReply(content="Sunny."), Finish(reason="x")]
    assert check_session(events, llm=llm) == []


def test_heard_is_a_word_prefix_of_what_was_sent() -> None:
    events: list[Event] = [
        START,
        *said("Hello there, friend."),
        Interrupted(content="Hello there,"),
        AssistantReply(content="Hello there,", interrupted=True),
        Finish(reason="x"),
    ]
    assert check_session(events) == []


def test_the_fakes_records_are_checked() -> None:
    llm = FakeLLM()
    llm.calls.append(LLMCall([Message("assistant", "something nobody heard")]))
    llm.open_streams = 1
    broken = rules_broken(GOOD, llm=llm)
    assert broken == {"history-holds-what-was-heard", "providers-closed"}


def test_violations_point_at_the_events() -> None:
    events: list[Event] = [START, *said("One."), Interrupted(content="One."), AUDIO]
    (violation,) = check_session(events, complete=False)
    assert violation.at == (3, 4)
    assert "#4 AudioChunk" in violation.describe(events)


def test_rules_can_be_added() -> None:
    @rule("no-shouting")
    def no_shouting(record: SessionRecord) -> Iterator[Violation]:
        for index, event in enumerate(record.events):
            if isinstance(event, AssistantDelta) and event.content.isupper():
                yield Violation("no-shouting", "the reply shouts", (index,))

    try:
        events: list[Event] = [
            START,
            *said("HEY."),
            AssistantReply(content="HEY."),
            Finish(reason="x"),
        ]
        assert rules_broken(events) == {"no-shouting"}
    finally:
        RULES[:] = [(n, r) for n, r in RULES if n != "no-shouting"]
    assert check_session(events) == []
