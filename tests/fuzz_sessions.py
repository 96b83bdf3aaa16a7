"""Random session timelines for the contract fuzzer (tests/test_fuzz_sessions.py, make fuzz).

A :class:`Timeline` is everything that decides how a session goes: what the
caller says and when (speech bursts, silences, noise under the speech
threshold, talking over replies), how the STT, LLM and TTS behave (latencies,
token pacing, failures and drops at given points), the pipeline's options and
how the consumer reads (slowly, leaving at an event, cancelling at a time).
:func:`run_timeline` runs one through a real :class:`~voicepipe.Pipeline` on
fake providers and returns what :func:`voicepipe.testing.check_session` found.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import anyio
from hypothesis import strategies as st

from tests.support import FORMAT, silence, tone
from voicepipe import BargeIn, ConversationPolicy, Event, Message, Pipeline, ProviderError, Usage
from voicepipe.audio import AudioFormat
from voicepipe.providers.base import Emit
from voicepipe.providers.fake import FakeLLM, FakeSTT, FakeTTS
from voicepipe.streams import closing
from voicepipe.testing import Violation, check_session

T = TypeVar("T")
CHUNK_MS = 20
HANG_LIMIT = 600.0  # virtual seconds: a session still running then has hung

SENTENCES = ["Sure.", "I can help with that.", "Let me see", " what we have.", "Okay!", "Hmm?"]


@dataclass(frozen=True)
class Timeline:
    """One generated session (see the module docstring); ``repr`` is its minimal reproduction."""

    audio: tuple[tuple[str, int], ...]  # ("speech" | "silence" | "noise", ms)
    hang_up: bool = True  # after the audio: end of input (True) or a line left open
    turns: tuple[str, ...] = ("hello",)
    greeting: str | None = None
    farewell: str | None = None
    stt_silence_ms: int = 300
    stt_fail_at_chunk: int | None = None
    llm_replies: tuple[str, ...] = ("Sure.",)
    llm_fail_at_token: tuple[int | None, ...] = ()  # per call: fail after that many tokens
    llm_ttft: float = 0.0
    llm_token_delay: float = 0.0
    tts_ttfb: float = 0.0
    tts_chunk_ms: int = 100
    tts_chunk_delay: float = 0.0
    tts_fail_on: tuple[str, ...] = ()
    tts_drop_at_chunk: int | None = None  # every synthesis fails after that many chunks
    realtime_lead: float | None = None
    barge_in: bool | str = True  # "any": every speech_started cuts (BargeIn.any_speech())
    event_buffer: int = 64
    read_delay: float = 0.0  # the consumer's pause per event
    leave_at_event: int | None = None
    cancel_at: float | None = None  # virtual seconds after the start


class ScriptedLLM:
    """FakeLLM whose n-th stream may break after a given number of tokens."""

    def __init__(self, timeline: Timeline) -> None:
        replies = itertools.cycle(timeline.llm_replies)
        self.inner = FakeLLM(
            lambda messages: next(replies),
            ttft=timeline.llm_ttft,
            token_delay=timeline.llm_token_delay,
        )
        self.fail_at = timeline.llm_fail_at_token

    @property
    def calls(self) -> list[Any]:
        return self.inner.calls

    @property
    def open_streams(self) -> int:
        return self.inner.open_streams

    async def stream(
        self, messages: Sequence[Message], *, usage: Usage | None = None, **_: Any
    ) -> AsyncIterator[str]:
        call = len(self.inner.calls)
        fail_at = self.fail_at[call % len(self.fail_at)] if self.fail_at else None
        count = 0
        async with closing(self.inner.stream(messages, usage=usage)) as tokens:
            async for token in tokens:
                if count == fail_at:
                    raise ProviderError("llm", "the connection dropped mid-reply")
                count += 1
                yield token
        if count == fail_at:
            raise ProviderError("llm", "the connection dropped at the end")

    async def complete_json(self, messages: Sequence[Message], schema: Any, **_: Any) -> Any:
        return await self.inner.complete_json(messages, schema)


class DroppingTTS(FakeTTS):
    """FakeTTS whose syntheses fail after ``drop_at`` chunks."""

    def __init__(self, timeline: Timeline) -> None:
        super().__init__(
            ttfb=timeline.tts_ttfb,
            chunk_ms=timeline.tts_chunk_ms,
            chunk_delay=timeline.tts_chunk_delay,
            fail_on=timeline.tts_fail_on,
        )
        self.drop_at = timeline.tts_drop_at_chunk

    async def synthesize(self, text: str) -> AsyncIterator[bytes]:
        count = 0
        async with closing(super().synthesize(text)) as chunks:
            async for chunk in chunks:
                if count == self.drop_at:
                    raise ConnectionResetError("TTS stream dropped")
                count += 1
                yield chunk


class FailingSTT(FakeSTT):
    """FakeSTT that fails for good at a given chunk."""

    def __init__(self, timeline: Timeline) -> None:
        super().__init__(itertools.cycle(timeline.turns), silence_ms=timeline.stt_silence_ms)
        self.fail_at = timeline.stt_fail_at_chunk

    async def transcribe(self, audio: object, format: AudioFormat, emit: Emit) -> None:
        fail_at = self.fail_at

        async def counted() -> AsyncIterator[bytes]:
            index = 0
            async for chunk in audio:  # type: ignore[attr-defined]
                if index == fail_at:
                    raise ProviderError("stt", "the STT connection is lost", recoverable=False)
                index += 1
                yield chunk

        async with closing(counted()) as chunks:
            await super().transcribe(chunks, format, emit)


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


async def run_timeline(timeline: Timeline) -> Outcome:
    """Run ``timeline`` through a real Pipeline; check the events and the fakes' records."""
    stt = FailingSTT(timeline)
    llm = ScriptedLLM(timeline)
    tts = DroppingTTS(timeline)
    policy = ConversationPolicy(greeting=timeline.greeting, farewell=timeline.farewell)
    pipeline = Pipeline(
        stt=stt,
        llm=llm,
        tts=tts,
        policy=policy,
        input_format=FORMAT,
        realtime_lead=timeline.realtime_lead,
        barge_in=BargeIn.any_speech() if timeline.barge_in == "any" else bool(timeline.barge_in),
        event_buffer=timeline.event_buffer,
    )

    async def microphone() -> AsyncIterator[bytes]:
        for kind, ms in timeline.audio:
            for _ in range(ms // CHUNK_MS):
                await anyio.sleep(CHUNK_MS / 1000)  # a live caller: real-time audio
                yield _audio_of(kind, CHUNK_MS)
        if not timeline.hang_up:
            await anyio.sleep_forever()

    outcome = Outcome()
    left = False
    with anyio.move_on_after(HANG_LIMIT) as hang:
        with anyio.CancelScope() as cancel:
            if timeline.cancel_at is not None:
                cancel.deadline = anyio.current_time() + timeline.cancel_at
            async with pipeline.run(microphone()) as events:
                async for event in events:
                    outcome.events.append(event)
                    if len(outcome.events) - 1 == timeline.leave_at_event:
                        left = True
                        break
                    if timeline.read_delay:
                        await anyio.sleep(timeline.read_delay)
    stopped = left or cancel.cancelled_caught or hang.cancelled_caught
    outcome.complete = not stopped
    if hang.cancelled_caught and timeline.hang_up and timeline.cancel_at is None:
        outcome.violations.append(
            Violation("session-ends", f"the session was still running after {HANG_LIMIT} s")
        )
    outcome.violations += check_session(
        outcome.events, complete=outcome.complete, stt=stt, llm=llm, tts=tts
    )
    return outcome


# -- strategies -------------------------------------------------------------------

_ms = st.integers(1, 60).map(lambda n: n * CHUNK_MS)
_delay = st.sampled_from([0.0, 0.0, 0.001, 0.01, 0.05, 0.1, 0.3])


def _sometimes(strategy: st.SearchStrategy[T]) -> st.SearchStrategy[T | None]:
    """None three times in four: a fault or an early exit in a quarter of the sessions."""
    return st.one_of(st.none(), st.none(), st.none(), strategy)


_turn = st.sampled_from(["hello", "tell me more", "bye", "what"])
_sentence = st.sampled_from([s.strip() for s in SENTENCES])
_sentence_text = st.lists(st.sampled_from(SENTENCES), min_size=0, max_size=4).map("".join)


@st.composite
def timelines(draw: st.DrawFn) -> Timeline:
    """Sessions of up to ~10 s of caller audio, every knob drawn."""
    audio = draw(
        st.lists(
            st.tuples(st.sampled_from(["speech", "silence", "noise"]), _ms), min_size=1, max_size=8
        )
    )
    return Timeline(
        audio=tuple(audio),
        hang_up=draw(st.booleans()),
        turns=tuple(
            draw(
                st.lists(
                    st.sampled_from(["hello", "tell me more", "bye", "what"]),
                    min_size=1,
                    max_size=4,
                )
            )
        ),
        greeting=draw(st.none() | _sentence_text.filter(bool)),
        farewell=draw(st.none() | st.just("Goodbye now. Take care.")),
        stt_silence_ms=draw(st.sampled_from([100, 200, 300, 600])),
        stt_fail_at_chunk=draw(_sometimes(st.integers(0, 300))),
        llm_replies=tuple(draw(st.lists(_sentence_text, min_size=1, max_size=3))),
        llm_fail_at_token=tuple(draw(st.lists(_sometimes(st.integers(0, 6)), max_size=3))),
        llm_ttft=draw(_delay),
        llm_token_delay=draw(_delay),
        tts_ttfb=draw(_delay),
        tts_chunk_ms=draw(st.sampled_from([20, 100, 300])),
        tts_chunk_delay=draw(_delay),
        tts_fail_on=tuple(
            draw(st.lists(st.sampled_from([s.strip() for s in SENTENCES]), max_size=2))
        ),
        tts_drop_at_chunk=draw(_sometimes(st.integers(0, 5))),
        realtime_lead=draw(st.none() | st.sampled_from([0.0, 0.1, 0.2])),
        barge_in=draw(st.sampled_from([True, False, "any"])),  # type: ignore[arg-type]
        event_buffer=draw(st.sampled_from([1, 2, 64])),
        read_delay=draw(st.sampled_from([0.0, 0.0, 0.001, 0.05])),
        leave_at_event=draw(_sometimes(st.integers(0, 60))),
        cancel_at=draw(_sometimes(st.integers(1, 60).map(lambda n: n / 4))),
    )
