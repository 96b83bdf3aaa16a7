"""Random session timelines for the contract fuzzer (tests/test_fuzz_sessions.py, make fuzz).

A :class:`Timeline` is everything that decides how a session goes: what the
caller says and when (speech bursts, silences, noise under the speech
threshold, talking over replies with real turns, backchannels and coughs),
how the STT, LLM and TTS behave (latencies, token pacing, failures and drops
at given points), the tools the model calls and how they behave (answer,
raise, hang past their timeout, run slowly, in parallel, round after round),
the pipeline's options and how the consumer reads (slowly, leaving at an
event, cancelling at a time). :func:`run_timeline` runs one through a real
:class:`~voicepipe.Pipeline` on fake providers and returns what
:func:`voicepipe.testing.check_session` found, plus the properties of a
session's run the event list cannot show (see :func:`run_checked`):
leaving early never raises (rule 10), no task is left behind, and a reply
neither cut nor failed is spoken whole (after a ``resumed`` too).

Form sessions have their own timelines in ``tests/fuzz_forms.py``.
"""

from __future__ import annotations

import functools
import itertools
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, TypeVar, overload

import anyio
from hypothesis import strategies as st

from tests import virtual_time
from tests.support import FORMAT, silence, tone
from tests.tool_support import assert_valid_history
from voicepipe import (
    AssistantReply,
    AudioChunk,
    BargeIn,
    ConversationPolicy,
    Event,
    Message,
    Pipeline,
    ProviderError,
    Usage,
)
from voicepipe.audio import AudioFormat
from voicepipe.policies.base import PolicyContext, Reply
from voicepipe.providers.base import Emit, ToolCall, ToolSpec
from voicepipe.providers.fake import FakeLLM, FakeSTT, FakeTTS
from voicepipe.streams import closing
from voicepipe.testing import Violation, check_session
from voicepipe.tools import Tool, ToolResult

T = TypeVar("T")
CHUNK_MS = 20
HANG_LIMIT = 600.0  # virtual seconds: a session still running then has hung
OVER_WAIT_MS = 3000  # how long a caller who talks over the reply waits for it to start

SENTENCES = ["Sure.", "I can help with that.", "Let me see", " what we have.", "Okay!", "Hmm?"]
BACKCHANNELS = ("uh-huh", "yeah", "mm-hmm", "okay", "sí")
TOOLS = ("answer", "slow", "hang", "boom", "nope", "bad", "end_call", "lookup", "stuck")
"""What a scripted tool call does: answers, sleeps ``tool_slow`` s, never returns (its
timeout ends it), raises, names no tool, has bad arguments, ends the call, answers from
a sync function (a thread), or blocks in a sync function for the rest of the session
(its timeout abandons the thread; after ``voicepipe.tools.MAX_ABANDONED`` such calls
the tool is refused at once)."""

LLMReply = str | tuple[str, ...]
"""A scripted model reply: text, or a round of tool calls (names from TOOLS) with
optional text pieces before them written ``"say:..."``."""


@dataclass(frozen=True)
class Timeline:
    """One generated session (see the module docstring); ``repr`` is its minimal reproduction."""

    audio: tuple[tuple[str, int], ...]  # ("speech" | "silence" | "noise" | "over", ms)
    hang_up: bool = True  # after the audio: end of input (True) or a line left open
    turns: tuple[str, ...] = ("hello",)  # what the STT hears, burst by burst ("": a cough)
    over_delay_ms: int = 0  # "over": how long after the reply's audio starts the caller speaks
    over_wait_ms: int = OVER_WAIT_MS  # "over": how long the caller waits for the reply
    greeting: str | None = None
    farewell: str | None = None
    stt_silence_ms: int = 300
    stt_fail_at_chunk: int | None = None
    llm_replies: tuple[LLMReply, ...] = ("Sure.",)
    llm_fail_at_token: tuple[int | None, ...] = ()  # per call: fail after that many tokens
    llm_ttft: float = 0.0
    llm_token_delay: float = 0.0
    tools: bool = False  # ConversationPolicy(tools=...) with the TOOLS
    tool_timeout: float = 1.0
    tool_slow: float = 0.5
    max_tool_rounds: int = 3
    filler: bool = True
    end_call: bool = False
    fixed_tool_ids: bool = False  # the model reuses "call_0", "call_1" in every round
    tts_ttfb: float = 0.0
    tts_chunk_ms: int = 100
    tts_chunk_delay: float = 0.0
    tts_fail_on: tuple[str, ...] = ()
    tts_drop_at_chunk: int | None = None  # every synthesis fails after that many chunks
    realtime_lead: float | None = None
    barge_in: bool | str = True  # "any": BargeIn.any_speech(); "quick": short windows
    event_buffer: int = 64
    read_delay: float = 0.0  # the consumer's pause per event
    leave_at_event: int | None = None
    cancel_at: float | None = None  # virtual seconds after the start


class Faults:
    """How many provider failures the fakes injected (a reply with one is not spoken whole)."""

    def __init__(self) -> None:
        self.count = 0


def _script(reply: LLMReply, timeline: Timeline) -> list[str | ToolCall]:
    if isinstance(reply, str):
        return [reply]
    parts: list[str | ToolCall] = []
    for index, name in enumerate(reply):
        if name.startswith("say:"):
            parts.append(name[4:])
            continue
        call_id = f"call_{index}" if timeline.fixed_tool_ids else ""
        arguments: dict[str, Any] = {"city": "Paris"} if name in ("answer", "lookup") else {}
        if name == "bad":
            name, arguments = "answer", {"town": 3}
        parts.append(ToolCall(name, arguments, id=call_id))
    return parts


class ScriptedLLM:
    """FakeLLM whose n-th stream may break after a given number of tokens (or calls)."""

    def __init__(self, timeline: Timeline, faults: Faults) -> None:
        replies = itertools.cycle(timeline.llm_replies)
        tools = timeline.tools

        def reply(messages: Sequence[Message]) -> list[str | ToolCall]:
            parts = _script(next(replies), timeline)
            # Without tools a call-script is spoken as its text pieces only.
            return parts if tools else [p for p in parts if isinstance(p, str)]

        self.inner = FakeLLM(reply, ttft=timeline.llm_ttft, token_delay=timeline.llm_token_delay)
        self.fail_at = timeline.llm_fail_at_token
        self.faults = faults
        self.streams = 0

    @property
    def calls(self) -> list[Any]:
        return self.inner.calls

    @property
    def open_streams(self) -> int:
        return self.inner.open_streams

    @overload
    def stream(
        self, messages: Sequence[Message], *, usage: Usage | None = None
    ) -> AsyncIterator[str]: ...

    @overload
    def stream(
        self,
        messages: Sequence[Message],
        *,
        usage: Usage | None = None,
        tools: Sequence[ToolSpec] | None = None,
    ) -> AsyncIterator[str | ToolCall]: ...

    async def stream(
        self,
        messages: Sequence[Message],
        *,
        usage: Usage | None = None,
        tools: Sequence[ToolSpec] | None = None,
    ) -> AsyncIterator[str | ToolCall]:
        call = self.streams
        self.streams += 1
        fail_at = self.fail_at[call % len(self.fail_at)] if self.fail_at else None
        count = 0
        async with closing(self.inner.stream(messages, usage=usage, tools=tools)) as items:
            async for item in items:
                if count == fail_at:
                    self.faults.count += 1
                    raise ProviderError("llm", "the connection dropped mid-reply")
                count += 1
                yield item
        if count == fail_at:
            self.faults.count += 1
            raise ProviderError("llm", "the connection dropped at the end")

    async def complete_json(self, messages: Sequence[Message], schema: Any, **_: Any) -> Any:
        return await self.inner.complete_json(messages, schema)


class DroppingTTS(FakeTTS):
    """FakeTTS whose syntheses fail after ``drop_at`` chunks."""

    def __init__(self, timeline: Timeline, faults: Faults) -> None:
        super().__init__(
            ttfb=timeline.tts_ttfb,
            chunk_ms=timeline.tts_chunk_ms,
            chunk_delay=timeline.tts_chunk_delay,
            fail_on=timeline.tts_fail_on,
        )
        self.drop_at = timeline.tts_drop_at_chunk
        self.faults = faults

    async def synthesize(self, text: str) -> AsyncIterator[bytes]:
        count = 0
        if text in self.fail_on:
            self.faults.count += 1
        async with closing(super().synthesize(text)) as chunks:
            async for chunk in chunks:
                if count == self.drop_at:
                    self.faults.count += 1
                    raise ConnectionResetError("TTS stream dropped")
                count += 1
                yield chunk


class FailingSTT(FakeSTT):
    """FakeSTT that fails for good at a given chunk."""

    def __init__(self, timeline: Timeline, faults: Faults) -> None:
        super().__init__(itertools.cycle(timeline.turns), silence_ms=timeline.stt_silence_ms)
        self.fail_at = timeline.stt_fail_at_chunk
        self.faults = faults

    async def transcribe(self, audio: object, format: AudioFormat, emit: Emit) -> None:
        fail_at = self.fail_at
        faults = self.faults

        async def counted() -> AsyncIterator[bytes]:
            index = 0
            async for chunk in audio:  # type: ignore[attr-defined]
                if index == fail_at:
                    faults.count += 1
                    raise ProviderError("stt", "the STT connection is lost", recoverable=False)
                index += 1
                yield chunk

        async with closing(counted()) as chunks:
            await super().transcribe(chunks, format, emit)


class ThreadedTool(Tool):
    """A sync tool that returns at once: the virtual clock waits for its thread (real
    time it cannot see) instead of jumping to the tool's timeout."""

    __slots__ = ()

    async def run(
        self, arguments: Mapping[str, Any] | str, *, time_limit: float | None = None
    ) -> ToolResult:
        async with virtual_time.real_work():
            return await super().run(arguments, time_limit=time_limit)


def make_tools(timeline: Timeline, release: threading.Event) -> list[Callable[..., Any] | Tool]:
    """The tools a tool timeline's model can call; the sync ``stuck`` blocks until
    ``release`` (set once the session is over), so its abandoned threads end then."""

    def lookup(city: str) -> str:
        """Today's weather in a city, from a blocking client."""
        return f"cloudy in {city}"

    def stuck() -> str:
        """A blocking lookup that never returns."""
        release.wait()
        return "too late"

    async def answer(city: str) -> str:
        """Today's weather in a city."""
        return f"sunny in {city}"

    async def slow() -> str:
        """A slow lookup."""
        await anyio.sleep(timeline.tool_slow)
        return "done at last"

    async def hang() -> str:
        """A lookup that never returns."""
        await anyio.sleep_forever()
        return ""

    async def boom() -> str:
        """A lookup that breaks."""
        raise RuntimeError("the lookup broke")

    return [answer, slow, hang, boom, ThreadedTool(lookup), stuck]


@dataclass(frozen=True, slots=True)
class ReplyRecord:
    """What the policy was told at the end of one reply."""

    produced: str
    spoken: str
    interrupted: bool
    faulty: bool  # a provider failed while the reply was being made


class RecordingPolicy:
    """A policy's replies as the pipeline reports them back (``on_reply_done``), each
    marked faulty when a fake failed meanwhile."""

    def __init__(self, inner: Any, faults: Faults) -> None:
        self.inner = inner
        self.faults = faults
        self.records: list[ReplyRecord] = []
        self._faults_at = 0
        if hasattr(inner, "aclose"):
            self.aclose = inner.aclose

    async def start(self, ctx: PolicyContext) -> Reply | None:
        self._faults_at = self.faults.count
        result: Reply | None = await self.inner.start(ctx)
        return result

    async def on_user_turn(self, text: str, ctx: PolicyContext) -> Reply | None:
        self._faults_at = self.faults.count
        result: Reply | None = await self.inner.on_user_turn(text, ctx)
        return result

    async def on_reply_done(self, text: str, *, spoken: str, interrupted: bool) -> None:
        faulty = self.faults.count != self._faults_at
        self.records.append(ReplyRecord(text, spoken, interrupted, faulty))
        await self.inner.on_reply_done(text, spoken=spoken, interrupted=interrupted)


def _words(text: str) -> str:
    return " ".join(text.split())


def whole_replies(records: Sequence[ReplyRecord]) -> list[Violation]:
    """A reply neither cut nor failed is spoken whole: what the policy produced is what
    was spoken (after a pause that ended in ``resumed`` too)."""
    return [
        Violation(
            "reply-spoken-whole",
            f"reply {number} was neither cut nor failed but only {record.spoken!r} of "
            f"{record.produced!r} was spoken",
        )
        for number, record in enumerate(records)
        if not record.interrupted
        and not record.faulty
        and _words(record.spoken) != _words(record.produced)
    ]


@functools.cache
def _audio_of(kind: str, ms: int) -> bytes:
    if kind == "speech":
        return tone(ms)
    if kind == "noise":
        return tone(ms, amplitude=200)  # under FakeSTT's threshold
    return silence(ms)


@dataclass
class Outcome:
    events: list[Event] = field(default_factory=list)
    complete: bool = False
    violations: list[Violation] = field(default_factory=list)
    records: list[ReplyRecord] = field(default_factory=list)


@dataclass
class Caller:
    """The consumer's view the caller's microphone reacts to (``over`` and ``after``)."""

    audio_seen: int = 0
    replies_seen: int = 0
    last_reply: str = ""  # the content of the last `assistant` event

    def heard(self, event: Event) -> None:
        if isinstance(event, AudioChunk):
            self.audio_seen += 1
        elif isinstance(event, AssistantReply):
            self.replies_seen += 1
            self.last_reply = event.content


def barge_in_of(setting: bool | str) -> bool | BargeIn:
    if setting == "any":
        return BargeIn.any_speech()
    if setting == "quick":
        return BargeIn(min_speech_ms=100, resume_after_ms=300)
    return bool(setting)


def microphone(
    audio: Sequence[tuple[str, int]],
    caller: Caller,
    *,
    hang_up: bool,
    over_delay_ms: int = 0,
    over_wait_ms: int = OVER_WAIT_MS,
) -> AsyncIterator[bytes]:
    """A live caller: real-time audio; an ``over`` segment waits (in silence) for reply
    audio to reach the consumer, then speaks over it; an ``after`` segment waits for
    the end of a reply (its ``assistant`` event), then speaks."""

    def waiting(kind: str) -> int:
        return caller.audio_seen if kind == "over" else caller.replies_seen

    async def chunks() -> AsyncIterator[bytes]:
        for kind, ms in audio:
            if kind in ("over", "after"):
                seen, waited = waiting(kind), 0
                while waiting(kind) == seen and waited < over_wait_ms:
                    await anyio.sleep(CHUNK_MS / 1000)
                    waited += CHUNK_MS
                    yield _audio_of("silence", CHUNK_MS)
                for _ in range(over_delay_ms // CHUNK_MS if kind == "over" else 0):
                    await anyio.sleep(CHUNK_MS / 1000)
                    yield _audio_of("silence", CHUNK_MS)
                kind = "speech"
            for _ in range(ms // CHUNK_MS):
                await anyio.sleep(CHUNK_MS / 1000)  # a live caller: real-time audio
                yield _audio_of(kind, CHUNK_MS)
        if not hang_up:
            await anyio.sleep_forever()

    return chunks()


async def run_checked(
    session: Callable[[], AbstractAsyncContextManager[Any]],
    outcome: Outcome,
    *,
    leave_at_event: int | None,
    read_delay: float,
    cancel_at: float | None,
    on_event: Callable[[Event], Awaitable[None] | None] | None = None,
) -> tuple[bool, bool]:
    """Read a session as a consumer that may be slow, leave at an event or cancel.

    Adds to ``outcome`` what the event list cannot show: leaving early (or any
    end) never raises (rule 10), no task is left behind when ``run()`` exits,
    and the session ends within HANG_LIMIT. Returns (consumer stopped early,
    the session hung).
    """
    before = {task.id for task in anyio.get_running_tasks()}
    left = False
    with anyio.move_on_after(HANG_LIMIT) as hang:
        with anyio.CancelScope() as cancel:
            if cancel_at is not None:
                cancel.deadline = anyio.current_time() + cancel_at
            try:
                async with session() as events:
                    async for event in events:
                        outcome.events.append(event)
                        if on_event is not None:
                            pending = on_event(event)
                            if pending is not None:
                                await pending
                        if len(outcome.events) - 1 == leave_at_event:
                            left = True
                            break
                        if read_delay:
                            await anyio.sleep(read_delay)
            except Exception as exc:  # rule 10: no end of a session raises
                outcome.violations.append(
                    Violation(
                        "leaving-never-raises",
                        f"run() raised {type(exc).__name__}: {exc!r}"
                        + (" after the consumer left" if left else ""),
                    )
                )
    stray = [task.name for task in anyio.get_running_tasks() if task.id not in before]
    if stray:
        outcome.violations.append(
            Violation("no-task-left", f"tasks still running after run() exited: {stray}")
        )
    stopped = left or cancel.cancelled_caught or hang.cancelled_caught
    outcome.complete = not stopped
    return stopped, hang.cancelled_caught


async def run_timeline(timeline: Timeline) -> Outcome:
    """Run ``timeline`` through a real Pipeline; check the events and the fakes' records."""
    faults = Faults()
    release = threading.Event()
    stt = FailingSTT(timeline, faults)
    llm = ScriptedLLM(timeline, faults)
    tts = DroppingTTS(timeline, faults)
    inner = ConversationPolicy(
        greeting=timeline.greeting,
        farewell=timeline.farewell,
        tools=make_tools(timeline, release) if timeline.tools else (),
        max_tool_rounds=timeline.max_tool_rounds,
        tool_timeout=timeline.tool_timeout,
        filler="One moment." if timeline.filler else None,
        end_call=timeline.end_call and timeline.tools,
    )
    policy = RecordingPolicy(inner, faults)
    pipeline = Pipeline(
        stt=stt,
        llm=llm,
        tts=tts,
        policy=policy,
        input_format=FORMAT,
        realtime_lead=timeline.realtime_lead,
        barge_in=barge_in_of(timeline.barge_in),
        event_buffer=timeline.event_buffer,
    )
    caller = Caller()
    audio = microphone(
        timeline.audio,
        caller,
        hang_up=timeline.hang_up,
        over_delay_ms=timeline.over_delay_ms,
        over_wait_ms=timeline.over_wait_ms,
    )
    outcome = Outcome()
    try:
        _, hung = await run_checked(
            lambda: pipeline.run(audio),
            outcome,
            leave_at_event=timeline.leave_at_event,
            read_delay=timeline.read_delay,
            cancel_at=timeline.cancel_at,
            on_event=caller.heard,
        )
    finally:
        release.set()  # the `stuck` tool's abandoned threads end (none is left running)
        async with virtual_time.real_work():
            for thread in threading.enumerate():
                if thread.name == "voicepipe tool stuck":
                    await anyio.to_thread.run_sync(thread.join)
    if hung and timeline.hang_up and timeline.cancel_at is None:
        outcome.violations.append(
            Violation("session-ends", f"the session was still running after {HANG_LIMIT} s")
        )
    outcome.records = policy.records
    outcome.violations += check_session(
        outcome.events, complete=outcome.complete, stt=stt, llm=llm, tts=tts
    )
    if outcome.complete:
        outcome.violations += whole_replies(policy.records)
    if timeline.tools:
        outcome.violations += valid_histories([*llm.calls, inner.history])
    return outcome


def valid_histories(histories: Sequence[Sequence[Message]]) -> list[Violation]:
    """Every history (each LLM request, the policy's own) is one an OpenAI-compatible
    provider accepts: each tool call answered right after its message, no orphan result."""
    found = []
    for number, history in enumerate(histories):
        try:
            assert_valid_history(history)
        except AssertionError as exc:
            found.append(Violation("valid-tool-history", f"history {number}: {exc}"))
    return found


# -- strategies -------------------------------------------------------------------

_ms = st.integers(1, 60).map(lambda n: n * CHUNK_MS)
_short_ms = st.integers(1, 15).map(lambda n: n * CHUNK_MS)  # a cough, an "uh-huh"
_delay = st.sampled_from([0.0, 0.0, 0.001, 0.01, 0.05, 0.1, 0.3])


def _sometimes(strategy: st.SearchStrategy[T]) -> st.SearchStrategy[T | None]:
    """None three times in four: a fault or an early exit in a quarter of the sessions."""
    return st.one_of(st.none(), st.none(), st.none(), strategy)


_sentence_text = st.lists(st.sampled_from(SENTENCES), min_size=0, max_size=4).map("".join)
_segment = st.one_of(
    st.tuples(st.sampled_from(["speech", "silence", "noise"]), _ms),
    st.tuples(st.just("over"), st.one_of(_short_ms, _ms)),
)
_request = st.sampled_from(["hello", "tell me more", "what"])
_turn = st.one_of(
    st.sampled_from(["hello", "tell me more", "bye", "what"]),
    st.sampled_from(BACKCHANNELS),
    st.just(""),  # a cough: speech the STT hears no words in
)
_tool_round = st.lists(
    st.one_of(
        st.sampled_from(TOOLS),
        st.sampled_from(SENTENCES).map(lambda s: "say:" + s),
    ),
    min_size=1,
    max_size=3,
).map(tuple)


@st.composite
def timelines(draw: st.DrawFn, *, tools: bool | None = None) -> Timeline:
    """Sessions of up to ~10 s of caller audio, every knob drawn (``tools``: force tool
    sessions on or off; None draws it)."""
    with_tools = draw(st.booleans()) if tools is None else tools
    reply = st.one_of(_tool_round, _tool_round, _sentence_text) if with_tools else _sentence_text
    paced = st.sampled_from([0.0, 0.1, 0.2])
    return Timeline(
        audio=tuple(draw(st.lists(_segment, min_size=1, max_size=8))),
        hang_up=draw(st.sampled_from([True, True, True, False])),  # a line left open: 1 in 4
        # With tools the first burst is a request more often, so the model gets to call.
        turns=tuple(
            draw(st.lists(_turn, min_size=1, max_size=4))
            if not with_tools or draw(st.booleans())
            else [draw(_request), *draw(st.lists(_turn, max_size=3))]
        ),
        over_delay_ms=draw(st.sampled_from([0, 0, 100, 300, 1000])),
        greeting=draw(st.none() | _sentence_text.filter(bool)),
        farewell=draw(st.none() | st.just("Goodbye now. Take care.")),
        stt_silence_ms=draw(st.sampled_from([100, 200, 300, 600])),
        stt_fail_at_chunk=draw(_sometimes(st.integers(0, 300))),
        llm_replies=tuple(draw(st.lists(reply, min_size=1, max_size=3))),
        llm_fail_at_token=tuple(draw(st.lists(_sometimes(st.integers(0, 6)), max_size=3))),
        llm_ttft=draw(_delay),
        llm_token_delay=draw(_delay),
        tools=with_tools,
        tool_timeout=draw(st.sampled_from([0.2, 1.0, 3.0])),
        tool_slow=draw(st.sampled_from([0.05, 0.5, 1.5, 5.0])),
        max_tool_rounds=draw(st.integers(1, 3)),
        filler=draw(st.booleans()),
        end_call=draw(st.booleans()),
        fixed_tool_ids=draw(st.booleans()),
        tts_ttfb=draw(_delay),
        tts_chunk_ms=draw(st.sampled_from([20, 100, 300])),
        tts_chunk_delay=draw(_delay),
        tts_fail_on=tuple(
            draw(st.lists(st.sampled_from([s.strip() for s in SENTENCES]), max_size=2))
        ),
        tts_drop_at_chunk=draw(_sometimes(st.integers(0, 5))),
        # Paced more often than not: paused, resumed and interrupted need a reply playing.
        realtime_lead=draw(st.one_of(st.none(), paced, paced)),
        barge_in=draw(st.sampled_from([True, True, "quick", False, "any"])),  # type: ignore[arg-type]
        event_buffer=draw(st.sampled_from([1, 2, 64])),
        read_delay=draw(st.sampled_from([0.0, 0.0, 0.001, 0.05, 0.4])),
        leave_at_event=draw(_sometimes(st.integers(0, 60))),
        cancel_at=draw(_sometimes(st.integers(1, 60).map(lambda n: n / 4))),
    )
