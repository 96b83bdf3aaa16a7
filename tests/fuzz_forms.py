"""Random form-filling sessions for the contract fuzzer: FormPolicy on a SQLite store
(or PostgreSQL, with ``VOICEPIPE_TEST_POSTGRES_DSN`` set: asyncio only, asyncpg).

A :class:`FormTimeline` is a caller filling in a small form by voice: the
answers the (fake) STT hears, burst by burst (good answers, garbage, commands,
corrections, yes and no to read-backs), when the caller speaks (after the
question, over it, regardless of it), what the LLM says when it is asked to
extract a value (an honest "not an answer", a value nobody said, broken
JSON), and how the session ends (the form done, the caller hanging up,
leaving at an event, cancelling). :func:`run_form_timeline` runs it through
a real Pipeline with a :class:`~voicepipe.policies.form.FormPolicy` on an
SQLite file (or a fresh PostgreSQL schema, dropped after), then opens the
session again in a second call, and checks:

* the session contract (``voicepipe.testing``), rule 10 and no task left;
* rule 11: every ``form_progress`` is emitted after its answer's commit (the
  store's writes and the consumer's events are logged in one order), and
  every committed answer of a session read to the end was announced;
* no stored value differs from what the caller said (each utterance maps to
  the values it may mean, per field) or agreed to (a read-back answered yes:
  two utterances the end-of-turn detector joined, "fifty two" and "john at
  gmail dot com", are one address read back for a yes);
* the second call, a caller who answers what is asked, continues where the
  first left off: its claim is not refused, it welcomes back a caller with
  answers and opens with the first unanswered field, never asks an answered
  one again, keeps the first call's answers, and completes the form (or
  says it is already complete).
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

from tests import virtual_time
from tests.fuzz_sessions import (
    CHUNK_MS,
    HANG_LIMIT,
    Caller,
    Outcome,
    barge_in_of,
    microphone,
    run_checked,
)
from tests.support import FORMAT
from voicepipe import AssistantDelta, Event, Finish, FormProgress, Pipeline
from voicepipe.forms import Field, FieldType, Form, FormStore, SQLiteFormStore
from voicepipe.forms.store import Answer, Attempt, SessionRecord
from voicepipe.policies.form import FormPolicy
from voicepipe.providers.fake import FakeLLM, FakeSTT, FakeTTS
from voicepipe.testing import Violation, check_session

FORM = Form(
    name="fuzz",
    title="fuzz form",
    fields=(
        Field(name="age", question="How old are you?", type=FieldType.INTEGER, min=0, max=130),
        Field(name="email", question="What is your e-mail address?", type=FieldType.EMAIL),
        Field(
            name="phone",
            question="What is your phone number?",
            type=FieldType.PHONE,
            region="US",
            confirm=False,
        ),
        Field(
            name="news",
            question="Do you want the newsletter?",
            type=FieldType.BOOLEAN,
            required=False,
        ),
    ),
)
SESSION = "call-1"
_RAM = "/dev/shm" if os.path.isdir("/dev/shm") else None  # no fsync to wait for

# What each utterance may mean, per field: a stored value must be one of these for
# something the caller said.
UTTERANCES: dict[str, dict[str, Any]] = {
    "fifty two": {"age": 52},
    "i am forty one years old": {"age": 41},
    "42": {"age": 42},
    "two hundred": {},
    "john at gmail dot com": {"email": "john@gmail.com"},
    "my email is ana dot perez at yahoo dot com": {"email": "ana.perez@yahoo.com"},
    "four one five five five five two six eight one": {"phone": "+14155552681"},
    "yes": {"news": True},
    "okay": {"news": True},
    "no": {"news": False},
    "no it's thirty": {"age": 30, "news": False},
    "no it is bob at gmail dot com": {"email": "bob@gmail.com", "news": False},
    "i'm sixty want": {"age": 60},  # a number among unusual words: read back
    "no,thirty one": {"age": 31, "news": False},  # a correction with no space after its no
    "it's not bob at gmail dot com": {"news": False},  # an address refused, not given
    "banana": {},
    "the weather is nice": {},
    "um": {},
    "": {},  # a cough
    "repeat that": {},
    "go back": {},
    "skip": {},
    "uh-huh": {"news": True},
}
GOOD_PATH = (
    "fifty two",
    "john at gmail dot com",
    "yes",
    "four one five five five five two six eight one",
    "no",
)
EXTRACTIONS = (
    '{"is_answer": false, "reason": "That is not an answer."}',
    '{"is_answer": true, "value": 77}',  # a number nobody said
    '{"is_answer": true, "value": "evil@example.com"}',  # an address nobody said
    '{"is_answer": true, "value": "+14155550000"}',
    '{"is_answer": true, "value": true}',
    "not json at all",
)


@dataclass(frozen=True)
class FormTimeline:
    """One generated form call and its second call (see the module docstring)."""

    audio: tuple[tuple[str, int], ...]  # ("after" | "over" | "speech" | "silence" | "noise", ms)
    turns: tuple[str, ...] = GOOD_PATH  # what the STT hears, burst by burst
    hang_up: bool = True
    extractions: tuple[str, ...] = EXTRACTIONS[:1]  # the LLM's complete_json replies, cyclic
    llm_ttft: float = 0.0
    stt_silence_ms: int = 300
    tts_chunk_ms: int = 100
    realtime_lead: float | None = None
    barge_in: bool | str = True
    max_attempts: int = 3
    event_buffer: int = 64
    read_delay: float = 0.0
    leave_at_event: int | None = None
    cancel_at: float | None = None


class LoggedStore:
    """A store whose answer commits go into the shared ``log`` as they return, each
    call holding the virtual clock still while its worker thread runs."""

    def __init__(self, inner: FormStore, log: list[Any]) -> None:
        self.inner = inner
        self.log = log

    async def claim(self, session_id: str, *, form: str, language: str, owner: str) -> Any:
        async with virtual_time.real_work():
            return await self.inner.claim(session_id, form=form, language=language, owner=owner)

    async def record(
        self, session_id: str, owner: str, attempt: Attempt, answer: Answer | None = None
    ) -> None:
        async with virtual_time.real_work():
            await self.inner.record(session_id, owner, attempt, answer)
        if answer is not None:
            self.log.append(("stored", answer))

    async def complete(self, session_id: str, owner: str) -> Any:
        async with virtual_time.real_work():
            return await self.inner.complete(session_id, owner)

    async def release(self, session_id: str, owner: str) -> None:
        async with virtual_time.real_work():
            await self.inner.release(session_id, owner)

    async def get(self, session_id: str) -> SessionRecord | None:
        async with virtual_time.real_work():
            return await self.inner.get(session_id)

    async def attempts(self, session_id: str) -> list[Attempt]:
        async with virtual_time.real_work():
            return await self.inner.attempts(session_id)

    async def aclose(self) -> None:
        async with virtual_time.real_work():
            await self.inner.aclose()


@dataclass
class FormOutcome(Outcome):
    second: Outcome = field(default_factory=Outcome)
    stored: dict[str, Answer] = field(default_factory=dict)


def _extraction_llm(timeline: FormTimeline) -> FakeLLM:
    replies = list(timeline.extractions) or [EXTRACTIONS[0]]
    count = 0

    def reply(messages: object) -> str:
        nonlocal count
        count += 1
        return replies[(count - 1) % len(replies)]

    return FakeLLM(reply, ttft=timeline.llm_ttft)


def _said_values(turns: Sequence[str]) -> dict[str, list[Any]]:
    values: dict[str, list[Any]] = {}
    for text in turns:
        for name, value in UTTERANCES.get(text, {}).items():
            values.setdefault(name, []).append(value)
    return values


def _rule_11(events: Sequence[Event], log: Sequence[Any], complete: bool) -> list[Violation]:
    """Each form_progress after its commit; in a session read to the end, each commit
    of an answer announced by a form_progress."""
    found: list[Violation] = []
    stored: list[Answer] = []
    announced = 0
    for entry in log:
        if entry[0] == "stored":
            stored.append(entry[1])
            continue
        event = entry[1]
        if not isinstance(event, FormProgress):
            continue
        announced += 1
        if not any(a.field == event.field and a.value == event.value for a in stored):
            found.append(
                Violation(
                    "answer-stored-before-it-is-announced",
                    f"form_progress {event.field}={event.value!r} before its commit",
                    (events.index(event),),
                )
            )
    answers = [a for a in stored if not a.skipped]
    if complete and announced != len(answers):
        found.append(
            Violation(
                "answer-stored-before-it-is-announced",
                f"{len(answers)} answers stored but {announced} form_progress events",
            )
        )
    return found


def _values_said(
    stored: dict[str, Answer], progress: Sequence[FormProgress], said: dict[str, list[Any]]
) -> list[Violation]:
    found = []
    for name, answer in stored.items():
        if not answer.skipped and answer.value not in said.get(name, []):
            found.append(
                Violation(
                    "stored-value-was-said",
                    f"{name}={answer.value!r} is stored, but the caller said "
                    f"{said.get(name, [])!r} for it (from {answer.transcript!r})",
                )
            )
    for event in progress:
        if event.value not in said.get(event.field, []):
            found.append(
                Violation(
                    "stored-value-was-said",
                    f"form_progress {event.field}={event.value!r} was never said",
                )
            )
    return found


def _resumed(
    record: SessionRecord | None,
    second: Outcome,
    before: dict[str, Answer],
    after: SessionRecord | None,
) -> list[Violation]:
    """The second call continues where the first left off, and finishes the form."""
    name = "resume-continues"
    events = second.events
    finish = next((e for e in events if isinstance(e, Finish)), None)
    said = " ".join("".join(e.content for e in events if isinstance(e, AssistantDelta)).split())
    if finish is None:
        return [Violation(name, "the second call did not finish")]
    if finish.reason == "session_busy":
        return [Violation(name, "the first call still held the session", (events.index(finish),))]
    if record is not None and record.status == "complete":
        if finish.reason != "form_already_complete":
            return [Violation(name, f"a complete form reopened with finish {finish.reason!r}")]
        return []
    found = []
    if finish.reason != "form_complete":
        found.append(Violation(name, f"the second call finished {finish.reason!r}: {said!r}"))
    missing = [f for f in FORM.fields if f.name not in before]
    if missing and not said.startswith(_opening(bool(before)) + " " + missing[0].question):
        found.append(
            Violation(name, f"the second call did not open with {missing[0].name!r}: {said!r}")
        )
    asked_again = [f.name for f in FORM.fields if f.name in before and f.question in said]
    if asked_again:
        found.append(Violation(name, f"the second call asked {asked_again} again: {said!r}"))
    kept = after.answers if after is not None else {}
    changed = [n for n, a in before.items() if n not in kept or kept[n].value != a.value]
    if changed:
        found.append(Violation(name, f"the second call changed the first's answers {changed}"))
    return found


def _opening(resumed: bool) -> str:
    return (
        "Welcome back! Let's continue where we left off."
        if resumed
        else "Hello! Let's fill in the fuzz form."
    )


SECOND_CALLER = (  # what the second caller says to what it hears last
    ("Is that right?", "yes"),
    ("How old", "fifty two"),
    ("e-mail", "john at gmail dot com"),
    ("phone", "four one five five five five two six eight one"),
    ("newsletter", "no"),
)


def _answering(caller: Caller) -> Iterator[str]:
    """The second caller's words: the answer to the question it heard last."""
    while True:
        heard = caller.last_reply
        yield next((answer for cue, answer in SECOND_CALLER if cue in heard), "repeat that")


async def _call(
    timeline: FormTimeline, open_store: Callable[[], FormStore], log: list[Any], *, second: bool
) -> tuple[Outcome, tuple[SessionRecord | None, list[Attempt]]]:
    store = LoggedStore(open_store(), log)
    policy = FormPolicy(FORM, store=store, session_id=SESSION, max_attempts=timeline.max_attempts)
    caller = Caller()
    stt = FakeSTT(_answering(caller) if second else timeline.turns, silence_ms=300)
    llm = _extraction_llm(timeline)
    tts = FakeTTS(chunk_ms=timeline.tts_chunk_ms, ms_per_char=10)
    pipeline = Pipeline(
        stt=stt,
        llm=llm,
        tts=tts,
        policy=policy,
        input_format=FORMAT,
        realtime_lead=None if second else timeline.realtime_lead,
        barge_in=barge_in_of(timeline.barge_in),
        event_buffer=64 if second else timeline.event_buffer,
    )

    def heard(event: Event) -> None:
        caller.heard(event)
        log.append(("event", event))

    audio = microphone(
        (("after", 400),) * 8 if second else timeline.audio,
        caller,
        hang_up=True if second else timeline.hang_up,
    )
    outcome = Outcome()
    try:
        _, hung = await run_checked(
            lambda: pipeline.run(audio),
            outcome,
            leave_at_event=None if second else timeline.leave_at_event,
            read_delay=0.0 if second else timeline.read_delay,
            cancel_at=None if second else timeline.cancel_at,
            on_event=heard,
        )
        if hung and (second or (timeline.hang_up and timeline.cancel_at is None)):
            outcome.violations.append(
                Violation("session-ends", f"the call was still running after {HANG_LIMIT} s")
            )
        outcome.violations += check_session(
            outcome.events, complete=outcome.complete, stt=stt, llm=llm, tts=tts
        )
        return outcome, (await store.get(SESSION), await store.attempts(SESSION))
    finally:
        await store.aclose()


@asynccontextmanager
async def _stores(kind: str) -> AsyncIterator[Callable[[], FormStore]]:
    """Opens stores on one fresh database: an SQLite file, or a PostgreSQL schema."""
    if kind == "sqlite":
        with tempfile.TemporaryDirectory(prefix="voicepipe-fuzz-", dir=_RAM) as directory:
            path = Path(directory) / "forms.db"
            yield lambda: SQLiteFormStore(path, lease_seconds=60)
        return
    import asyncpg

    from voicepipe.forms import PostgresFormStore

    dsn = os.environ.get("VOICEPIPE_TEST_POSTGRES_DSN")
    assert dsn, "set VOICEPIPE_TEST_POSTGRES_DSN (source .ci/postgres.sh) for PostgreSQL"
    schema = f"vp_fuzz_{uuid.uuid4().hex[:12]}"
    try:
        yield lambda: PostgresFormStore(
            dsn, schema=schema, lease_seconds=60, min_size=1, max_size=2
        )
    finally:
        async with virtual_time.real_work():
            conn = await asyncpg.connect(dsn)
            try:
                await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            finally:
                await conn.close()


async def run_form_timeline(timeline: FormTimeline, *, store: str = "sqlite") -> FormOutcome:
    """Run the form call of ``timeline``, then a second call of the same session, on a
    fresh ``store`` (``"sqlite"`` or ``"postgres"``)."""
    outcome = FormOutcome()
    async with _stores(store) as open_store:
        log: list[Any] = []
        first, (record, attempts) = await _call(timeline, open_store, log, second=False)
        outcome.events, outcome.complete = first.events, first.complete
        outcome.violations += first.violations
        outcome.violations += _rule_11(first.events, log, first.complete)
        before = dict(record.answers) if record is not None else {}
        progress = [e for e in first.events if isinstance(e, FormProgress)]
        said = _said_values(timeline.turns)
        for attempt in attempts:  # a value read back and confirmed is one the caller agreed to
            if attempt.accepted and attempt.reason == "confirmed":
                said.setdefault(attempt.field, []).append(attempt.value)
        outcome.violations += _values_said(before, progress, said)
        second, (after, _) = await _call(timeline, open_store, [], second=True)
        outcome.second = second
        outcome.violations += [
            Violation(v.rule, "second call: " + v.message, v.at) for v in second.violations
        ]
        outcome.violations += _resumed(record, second, before, after)
        outcome.stored = before
    return outcome


# -- strategies -------------------------------------------------------------------

_utterance = st.sampled_from(sorted(UTTERANCES))
_speech_ms = st.integers(5, 40).map(lambda n: n * CHUNK_MS)


@st.composite
def form_timelines(draw: st.DrawFn) -> FormTimeline:
    """A caller who mostly follows the form, with garbage, commands and corrections
    slipped in, speaking after, over or regardless of the questions."""
    turns = list(GOOD_PATH)
    for position, text in draw(
        st.lists(st.tuples(st.integers(0, len(GOOD_PATH)), _utterance), max_size=4)
    ):
        turns.insert(min(position, len(turns)), text)
    stop = draw(st.integers(1, len(turns)) | st.just(len(turns)))
    audio: list[tuple[str, int]] = []
    for _ in range(stop):
        kind = draw(st.sampled_from(["after", "after", "after", "over", "speech"]))
        audio.append((kind, draw(_speech_ms)))
        gap = draw(st.sampled_from([0, 0, 200, 600]))
        if gap:
            audio.append((draw(st.sampled_from(["silence", "noise"])), gap))
    audio.append(("silence", 1000))
    return FormTimeline(
        audio=tuple(audio),
        turns=tuple(turns),
        hang_up=draw(st.booleans() | st.just(True)),
        extractions=tuple(draw(st.lists(st.sampled_from(EXTRACTIONS), min_size=1, max_size=3))),
        llm_ttft=draw(st.sampled_from([0.0, 0.05, 0.5])),
        stt_silence_ms=draw(st.sampled_from([200, 300, 600])),
        tts_chunk_ms=draw(st.sampled_from([20, 100])),
        realtime_lead=draw(st.none() | st.sampled_from([0.0, 0.1])),
        barge_in=draw(st.sampled_from([True, True, "quick", False, "any"])),  # type: ignore[arg-type]
        max_attempts=draw(st.integers(1, 3)),
        event_buffer=draw(st.sampled_from([1, 64])),
        read_delay=draw(st.sampled_from([0.0, 0.0, 0.01])),
        leave_at_event=draw(st.none() | st.none() | st.integers(0, 80)),
        cancel_at=draw(st.none() | st.none() | st.integers(1, 40).map(lambda n: n / 2)),
    )
