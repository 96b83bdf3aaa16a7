"""The session contract as code: check the events of a session against its invariants.

Every session keeps a few rules whatever the timing, providers, policy or
transport (they are listed in ``docs/events.md``): ``session`` first and
``finish`` last, nothing of a reply after its ``interrupted``, ``assistant``
equal to what was spoken, ... :func:`check_session` returns each broken rule
with the events that break it; :func:`assert_session_ok` fails a test with
all of them. Use them in your app's tests::

    async with pipeline.run(audio) as stream:
        events = [event async for event in stream]
    assert_session_ok(events, llm=llm, stt=stt, tts=tts)

Rules are plain functions over a :class:`SessionRecord`; a feature that adds
events adds its own rules with :func:`rule` (they join :data:`RULES`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from voicepipe.events import (
    AssistantDelta,
    AssistantReply,
    AudioChunk,
    ErrorEvent,
    Event,
    Finish,
    Interrupted,
    Metrics,
    Paused,
    Resumed,
    Session,
    ToolCallEvent,
    ToolResultEvent,
    UserTurn,
)

__all__ = [
    "RULES",
    "Rule",
    "SessionRecord",
    "Violation",
    "assert_session_ok",
    "check_session",
    "replies",
    "rule",
]


@dataclass(frozen=True, slots=True)
class Violation:
    """One broken rule: its name, what is wrong, and the indexes of the events at fault."""

    rule: str
    message: str
    at: tuple[int, ...] = ()

    def describe(self, events: Sequence[Event]) -> str:
        shown = ", ".join(f"#{i} {_short(events[i])}" for i in self.at if i < len(events))
        return f"[{self.rule}] {self.message}" + (f" ({shown})" if shown else "")


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """What a rule looks at: the events, whether the consumer read to the end, and the
    providers (any of them may be None; fakes carry the records rules can use)."""

    events: Sequence[Event]
    complete: bool = True
    stt: Any = None
    llm: Any = None
    tts: Any = None


Rule = Callable[[SessionRecord], Iterable[Violation]]

RULES: list[tuple[str, Rule]] = []
"""The rules :func:`check_session` applies, in order, by name."""


def rule(name: str) -> Callable[[Rule], Rule]:
    """Register a rule under ``name`` (a later registration of the same name replaces it)."""

    def register(fn: Rule) -> Rule:
        RULES[:] = [(n, r) for n, r in RULES if n != name]
        RULES.append((name, fn))
        return fn

    return register


def check_session(
    events: Sequence[Event],
    *,
    complete: bool = True,
    stt: Any = None,
    llm: Any = None,
    tts: Any = None,
    rules: Iterable[tuple[str, Rule]] | None = None,
) -> list[Violation]:
    """Every broken invariant of a session's ``events``; empty when all hold.

    ``complete=False`` when the consumer stopped reading early (the events are
    a prefix: no ``finish`` is expected). Pass the providers to check their
    records too (the fakes in :mod:`voicepipe.providers.fake`: every stream
    closed, the LLM's history holding only what was spoken).
    """
    record = SessionRecord(events, complete, stt, llm, tts)
    found: list[Violation] = []
    for _name, check in RULES if rules is None else rules:
        found.extend(check(record))
    return found


def assert_session_ok(events: Sequence[Event], **options: Any) -> None:
    """Raise ``AssertionError`` listing every broken invariant (see :func:`check_session`)."""
    found = check_session(events, **options)
    if found:
        lines = "\n".join("  " + v.describe(events) for v in found)
        raise AssertionError(f"{len(found)} broken session invariant(s):\n{lines}")


@dataclass(slots=True)
class Reply:
    """The events of one reply, by index: its pieces of text and audio, and how it ended."""

    deltas: list[int]
    audio: list[int]
    interrupted: int | None = None  # the `interrupted` event
    end: int | None = None  # the `assistant` event


def replies(events: Sequence[Event]) -> Iterator[Reply]:
    """Cut the events into replies: each runs up to its ``assistant`` event (the last may
    be open). An ``interrupted`` belongs to the reply in progress."""
    current = Reply([], [])
    for index, event in enumerate(events):
        if isinstance(event, AssistantDelta):
            current.deltas.append(index)
        elif isinstance(event, AudioChunk):
            current.audio.append(index)
        elif isinstance(event, Interrupted) and current.interrupted is None:
            current.interrupted = index
        elif isinstance(event, AssistantReply):
            current.end = index
            yield current
            current = Reply([], [])
    if current.deltas or current.audio or current.interrupted is not None:
        yield current


def _short(event: Event) -> str:
    text = repr(event)
    return text if len(text) <= 80 else text[:77] + "..."


def _spoken(events: Sequence[Event], deltas: Iterable[int]) -> str:
    return "".join(_text(events[i]) for i in deltas).strip()


def _word_prefix(prefix: str, text: str) -> bool:
    """``prefix`` is ``text`` cut at a word boundary (or all of it)."""
    prefix, text = prefix.strip(), text.strip()
    if not text.startswith(prefix):
        return False
    return (
        len(prefix) in (0, len(text))
        or not text[len(prefix)].isalnum()
        or (not prefix[-1].isalnum())
    )


def _text(event: Event) -> str:
    return event.content if isinstance(event, (AssistantDelta, Interrupted)) else ""


# -- the rules ------------------------------------------------------------------


@rule("session-first-finish-last")
def _framing(record: SessionRecord) -> Iterator[Violation]:
    events = record.events
    if not events:
        if record.complete:
            yield Violation("session-first-finish-last", "no events at all")
        return
    if not isinstance(events[0], Session):
        yield Violation("session-first-finish-last", "the first event is not `session`", (0,))
    sessions = [i for i, e in enumerate(events) if isinstance(e, Session)]
    if len(sessions) > 1:
        yield Violation("session-first-finish-last", "more than one `session`", tuple(sessions))
    finishes = [i for i, e in enumerate(events) if isinstance(e, Finish)]
    if len(finishes) > 1:
        yield Violation("session-first-finish-last", "more than one `finish`", tuple(finishes))
    if finishes and finishes[0] != len(events) - 1:
        after = tuple(range(finishes[0], min(len(events), finishes[0] + 3)))
        yield Violation("session-first-finish-last", "events after `finish`", after)
    if record.complete and not finishes:
        yield Violation("session-first-finish-last", "the session ended without `finish`")


@rule("nothing-after-interrupted")
def _cut(record: SessionRecord) -> Iterator[Violation]:
    for reply in replies(record.events):
        if reply.interrupted is None:
            continue
        late = [i for i in reply.deltas + reply.audio if i > reply.interrupted]
        if late:
            yield Violation(
                "nothing-after-interrupted",
                "audio or assistant_delta of a reply after its `interrupted`",
                (reply.interrupted, *sorted(late)[:3]),
            )


@rule("assistant-is-what-was-spoken")
def _said(record: SessionRecord) -> Iterator[Violation]:
    events = record.events
    for reply in replies(events):
        spoken = _spoken(events, reply.deltas)
        said: str | None = None
        if reply.interrupted is not None:
            # Heard means heard: with paced audio the caller had heard a word
            # prefix of what was sent when the cut came; unpaced, all of it.
            said = _text(events[reply.interrupted])
            before = _spoken(events, [i for i in reply.deltas if i < reply.interrupted])
            if not _word_prefix(said, before):
                yield Violation(
                    "assistant-is-what-was-spoken",
                    f"`interrupted` says {said!r} but {before!r} was spoken",
                    (reply.interrupted,),
                )
        if reply.end is None:
            continue
        end = events[reply.end]
        assert isinstance(end, AssistantReply)
        expected = spoken if said is None else said
        if end.content != expected:
            yield Violation(
                "assistant-is-what-was-spoken",
                f"`assistant` says {end.content!r} but {expected!r} was "
                + ("spoken" if said is None else "heard before the cut"),
                (reply.end,),
            )
        if end.interrupted != (reply.interrupted is not None):
            yield Violation(
                "assistant-is-what-was-spoken",
                "`assistant.interrupted` disagrees with the `interrupted` event",
                (reply.end,),
            )
        if not spoken and reply.interrupted is None:
            yield Violation(
                "assistant-is-what-was-spoken",
                "`assistant` for a reply nothing of which was spoken",
                (reply.end,),
            )


@rule("paused-ends-in-resumed-or-interrupted")
def _paused(record: SessionRecord) -> Iterator[Violation]:
    name = "paused-ends-in-resumed-or-interrupted"
    events = record.events
    open_at: int | None = None
    for index, event in enumerate(events):
        if isinstance(event, Paused):
            if open_at is not None:
                yield Violation(
                    name, "`paused` again before `resumed`/`interrupted`", (open_at, index)
                )
            open_at = index
        elif isinstance(event, (Resumed, Interrupted)):
            open_at = None
        elif open_at is not None and isinstance(event, (AudioChunk, AssistantDelta)):
            yield Violation(name, "reply audio or text while paused", (open_at, index))
            open_at = None  # one report per pause
        elif open_at is not None and isinstance(event, (AssistantReply, Finish)):
            yield Violation(
                name, "a `paused` that never ended in `resumed`/`interrupted`", (open_at, index)
            )
            open_at = None
    if open_at is not None and record.complete:
        yield Violation(name, "a `paused` that never ended", (open_at,))


@rule("audio-follows-its-text")
def _audio_text(record: SessionRecord) -> Iterator[Violation]:
    for reply in replies(record.events):
        if reply.audio and (not reply.deltas or reply.deltas[0] > reply.audio[0]):
            yield Violation(
                "audio-follows-its-text",
                "reply audio before any `assistant_delta` of that reply",
                (reply.audio[0],),
            )


@rule("each-turn-answered-once")
def _answered(record: SessionRecord) -> Iterator[Violation]:
    events = record.events
    turns = 0
    seen: set[int] = set()
    for index, event in enumerate(events):
        if isinstance(event, UserTurn):
            turns += 1
        elif isinstance(event, Metrics):
            if event.turn in seen:
                yield Violation(
                    "each-turn-answered-once", f"turn {event.turn} answered twice", (index,)
                )
            elif event.turn > turns:
                yield Violation(
                    "each-turn-answered-once",
                    f"`metrics` for turn {event.turn} after only {turns} `user_turn`",
                    (index,),
                )
            seen.add(event.turn)


@rule("fatal-error-ends-the-session")
def _fatal(record: SessionRecord) -> Iterator[Violation]:
    events = record.events
    fatal = next(
        (i for i, e in enumerate(events) if isinstance(e, ErrorEvent) and not e.recoverable),
        None,
    )
    if fatal is None:
        return
    late = [
        i
        for i in range(fatal + 1, len(events))
        if isinstance(events[i], (AudioChunk, AssistantDelta, UserTurn))
    ]
    if late:
        yield Violation(
            "fatal-error-ends-the-session",
            "the session went on after a non-recoverable `error`",
            (fatal, *late[:3]),
        )
    last = events[-1]
    if isinstance(last, Finish) and last.reason != "error":
        yield Violation(
            "fatal-error-ends-the-session",
            f"`finish` reason {last.reason!r} after a non-recoverable `error`",
            (fatal, len(events) - 1),
        )


@rule("history-holds-what-was-heard")
def _history(record: SessionRecord) -> Iterator[Violation]:
    calls = getattr(record.llm, "calls", None)
    if not calls or not record.complete:
        return
    said = [e.content for e in record.events if isinstance(e, AssistantReply)]
    for number, messages in enumerate(calls):
        # Messages after the last user message are the reply in progress: its own rounds
        # of tool calls, the model's work in progress, not yet heard or not.
        users = [i for i, m in enumerate(messages) if m.role == "user"]
        for message in messages[: users[-1] if users else len(messages)]:
            # An assistant message without text is a tool call (the tools' rule judges it);
            # with tools, the words heard before a call are a piece of a heard reply.
            text = message.content.strip() if message.role == "assistant" else ""
            if text and not any(text in heard for heard in said):
                yield Violation(
                    "history-holds-what-was-heard",
                    f"LLM call {number} holds an assistant message nobody heard: "
                    f"{message.content!r}",
                )


@rule("tool-calls-answered")
def _tools(record: SessionRecord) -> Iterator[Violation]:
    name = "tool-calls-answered"
    calls: dict[str, int] = {}
    answered: set[str] = set()
    for index, event in enumerate(record.events):
        if isinstance(event, ToolCallEvent):
            if event.id in calls:
                yield Violation(name, f"tool call {event.id!r} started twice", (index,))
            calls[event.id] = index
        elif isinstance(event, ToolResultEvent):
            call = calls.get(event.id)
            if call is None:
                yield Violation(name, f"`tool_result` {event.id!r} without its call", (index,))
            elif event.id in answered:
                yield Violation(name, f"tool call {event.id!r} answered twice", (call, index))
            answered.add(event.id)
    if record.complete:
        for call_id, index in calls.items():
            if call_id not in answered:
                yield Violation(name, f"tool call {call_id!r} never got its result", (index,))


@rule("tool-result-is-followed")
def _after_tools(record: SessionRecord) -> Iterator[Violation]:
    """A tool call never leaves the caller in silence: after a turn's last
    ``tool_result`` comes reply text, an ``interrupted`` or an ``error``, or the session
    ends (``finish`` next, with its reason)."""
    name = "tool-result-is-followed"
    events = record.events
    pending: int | None = None  # the turn's last tool_result, not followed by anything yet
    cut = False  # the turn's reply was interrupted (its tools may finish after that)
    for index, event in enumerate(events):
        if isinstance(event, ToolResultEvent):
            pending = index
        elif isinstance(event, (AssistantDelta, ErrorEvent, ToolCallEvent)):
            pending = None
        elif isinstance(event, Interrupted):
            cut, pending = True, None
        elif isinstance(event, Metrics):
            if pending is not None and not cut:
                following = next((e for e in events[index + 1 :] if isinstance(e, _REPLY)), None)
                if not (
                    isinstance(following, Finish) or (following is None and not record.complete)
                ):
                    yield Violation(
                        name, "the reply said nothing after its tool calls", (pending, index)
                    )
            pending, cut = None, False


_REPLY = (AssistantDelta, AudioChunk, AssistantReply, Metrics, Finish, ToolCallEvent)

# What a task that was cut or cancelled meets in voicepipe's own machinery: never a failure.
_PLUMBING = frozenset(
    [
        "BrokenResourceError",
        "ClosedResourceError",
        "EndOfStream",
        "WouldBlock",
        "CancelledError",
        "Cancelled",
        "ExceptionGroup",
        "BaseExceptionGroup",
    ]
)


@rule("errors-are-real-failures")
def _plumbing(record: SessionRecord) -> Iterator[Violation]:
    """An ``error`` reports a failure of a provider, the policy, a tool or the input,
    never what a cut or cancelled task met in the session's own queues and task groups."""
    for index, event in enumerate(record.events):
        if isinstance(event, ErrorEvent) and event.message.split(":", 1)[0] in _PLUMBING:
            yield Violation(
                "errors-are-real-failures",
                f"`error` from the {event.stage} stage reports voicepipe's own machinery "
                f"({event.message!r}), not a failure",
                (index,),
            )


@rule("providers-closed")
def _closed(record: SessionRecord) -> Iterator[Violation]:
    if record.stt is not None and getattr(record.stt, "closed", True) is False:
        yield Violation("providers-closed", "the STT is still transcribing after the session")
    for name, provider in (("LLM", record.llm), ("TTS", record.tts)):
        open_streams = getattr(provider, "open_streams", 0)
        if open_streams:
            yield Violation(
                "providers-closed", f"{open_streams} {name} stream(s) left open after the session"
            )
