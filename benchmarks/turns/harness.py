"""Run a turn-taking scenario on fake providers in virtual time and measure what happened.

The caller's audio is paced in real time (a 20 ms chunk every 20 ms of
virtual time), the reply audio is paced with ``realtime_lead``, and every
event is stamped with the virtual clock, so latencies are exact and a run
of the whole suite takes well under a second per backend.
"""

from __future__ import annotations

import statistics
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

import anyio
import numpy as np

from benchmarks.turns.clock import run_virtual
from benchmarks.turns.scenarios import Noise, Quiet, Say, Scenario
from voicepipe import (
    AssistantReply,
    AudioChunk,
    BargeIn,
    ConversationPolicy,
    Event,
    Finish,
    Interrupted,
    Message,
    Metrics,
    Paused,
    Pipeline,
    PolicyContext,
    Reply,
    Resumed,
    UserTurn,
)
from voicepipe.audio import AudioFormat
from voicepipe.providers.fake import FakeLLM, FakeSTT, FakeTTS
from voicepipe.turns import Backchannels, LocalTurnDetector, TurnDetector

__all__ = ["CONFIGS", "Config", "Outcome", "run", "run_scenario", "summary"]

FORMAT = AudioFormat(16000, 1)
CHUNK_MS = 20
HANG_AFTER = 300.0  # virtual seconds: a scenario still running then is a hang
EPSILON = 1e-6  # float slack when comparing virtual times
_BACKCHANNELS = Backchannels()


@dataclass(frozen=True, slots=True)
class Config:
    """One way of running the suite: barge-in and end-of-turn settings."""

    name: str
    barge_in: BargeIn | bool = True
    detector: TurnDetector | bool = True
    interim_ms: int = 100  # how often the fake STT shows words; huge: a batch STT (none)


CONFIGS: dict[str, Config] = {
    "default": Config("default"),
    "today": Config("today (any speech cuts, no detector)", BargeIn.any_speech(), False),
    "no detector": Config("default barge-in, no detector", True, False),
    "patient": Config(
        "resume after 1.5 s, detector waits 1.2 s",
        BargeIn(resume_after_ms=1500),
        LocalTurnDetector(unfinished_wait=1.2),
    ),
    "batch stt": Config(
        "default, STT without interim words (Whisper, PocketSphinx)", interim_ms=10**9
    ),
    "batch stt, 1 s": Config(
        "STT without interim words, the 1 s window for it too",
        BargeIn(batch_resume_after_ms=1000),
        interim_ms=10**9,
    ),
    "eager": Config(
        "resume after 0.6 s, detector waits 0.5 s",
        BargeIn(resume_after_ms=600),
        LocalTurnDetector(unfinished_wait=0.5),
    ),
}


@dataclass(slots=True)
class Outcome:
    """What came of one scenario, with virtual times in seconds."""

    scenario: Scenario
    events: list[tuple[float, Event]] = field(default_factory=list)
    hang: bool = False
    llm_calls: int = 0
    audio_made: int = 0  # bytes of speech the TTS made for the replies

    @property
    def audio_sent(self) -> int:
        """Bytes of reply audio the client got."""
        return sum(len(e.audio) for _, e in self.events if isinstance(e, AudioChunk))

    def of(self, cls: type[Event]) -> list[tuple[float, Event]]:
        return [(t, e) for t, e in self.events if isinstance(e, cls)]

    @property
    def turns(self) -> list[str]:
        return [e.content for _, e in self.of(UserTurn) if isinstance(e, UserTurn)]

    @property
    def replies(self) -> list[AssistantReply]:
        return [e for _, e in self.of(AssistantReply) if isinstance(e, AssistantReply)]

    @property
    def cuts(self) -> int:
        return len(self.of(Interrupted))

    @property
    def resumes(self) -> int:
        return len(self.of(Resumed))

    @property
    def finish(self) -> str | None:
        done = self.of(Finish)
        return done[-1][1].reason if done and isinstance(done[-1][1], Finish) else None

    @property
    def false_cutoffs(self) -> int:
        """Expected turns that were not handed on whole (ended while the caller went on)."""
        got = [_norm(t) for t in self.turns]
        return sum(1 for t in self.scenario.turns if _norm(t) not in got)

    @property
    def missed_barge_ins(self) -> int:
        return max(0, self.scenario.cuts - self.cuts)

    def _cause(self, t: float) -> Say | Noise | None:
        """The caller's sound that was going on (or last started) at ``t``."""
        cause = None
        for start, _, step in sounds(self.scenario):
            if start <= t + EPSILON:
                cause = step
        return cause

    @property
    def wrongly_stopped(self) -> int:
        """Replies cut by a noise or by nothing but backchannels (not meant as a turn)."""
        expected = {_norm(t) for t in self.scenario.turns}
        count = 0
        for t, _ in self.of(Interrupted):
            cause = self._cause(t)
            if isinstance(cause, Noise) or (
                isinstance(cause, Say)
                and _BACKCHANNELS.is_backchannel(cause.words)
                and _norm(cause.words) not in expected
            ):
                count += 1
        return count

    @property
    def answered_backchannels(self) -> int:
        """Backchannels handed to the policy as turns (not an answer the scenario expects)."""
        expected = {_norm(t) for t in self.scenario.turns}
        return sum(
            1 for t in self.turns if _BACKCHANNELS.is_backchannel(t) and _norm(t) not in expected
        )

    @property
    def talked_over(self) -> int:
        """Replies resumed while the caller was taking the floor (cut later by the same speech)."""
        count, resumed_by = 0, None
        for t, event in self.events:
            if isinstance(event, Resumed):
                resumed_by = self._cause(t)
            elif isinstance(event, Interrupted):
                if resumed_by is not None and self._cause(t) is resumed_by:
                    count += 1
                resumed_by = None
        return count

    def held(self) -> list[float]:
        """Per turn the end-of-turn detector held: how long, in seconds."""
        return [
            e.end_of_turn_wait_ms / 1000
            for _, e in self.of(Metrics)
            if isinstance(e, Metrics) and e.end_of_turn_wait_ms
        ]

    def end_of_turn_delays(self) -> list[float]:
        """Per turn handed on: seconds from the caller's last speech before it to its user_turn."""
        ends = [end for _, end, _ in sounds(self.scenario)]
        delays = []
        for t, _ in self.of(UserTurn):
            before = [end for end in ends if end <= t + EPSILON]
            if before:
                delays.append(t - before[-1])
        return delays

    def cut_delays(self) -> list[float]:
        """Per cut: seconds from the start of the speech that cut the reply to ``interrupted``."""
        starts = [start for start, _, _ in sounds(self.scenario)]
        return [t - max(s for s in starts if s <= t + EPSILON) for t, _ in self.of(Interrupted)]

    def pause_times(self, *, noise: bool) -> list[float]:
        """Per false alarm by a noise (or by words): how long the reply stood paused."""
        out, paused_at = [], None
        for t, event in self.events:
            if isinstance(event, Paused):
                paused_at = t
            elif isinstance(event, Resumed | Interrupted) and paused_at is not None:
                if (
                    isinstance(event, Resumed)
                    and isinstance(self._cause(paused_at), Noise) == noise
                ):
                    out.append(t - paused_at)
                paused_at = None
        return out


def _norm(text: str) -> str:
    return " ".join(text.lower().split())


def sounds(scenario: Scenario) -> list[tuple[float, float, Say | Noise]]:
    """(start, end, step) of each sound the caller makes, in seconds."""
    out: list[tuple[float, float, Say | Noise]] = []
    now = 0.0
    for step in scenario.caller:
        if isinstance(step, Say | Noise):
            out.append((now, now + step.ms / 1000, step))
        now += step.ms / 1000
    return out


def _audio(scenario: Scenario) -> bytes:
    parts = []
    for step in scenario.caller:
        n = FORMAT.sample_rate * step.ms // 1000
        if isinstance(step, Quiet):
            parts.append(bytes(2 * n))
        else:
            t = np.arange(n) / FORMAT.sample_rate
            parts.append((5000 * np.sin(2 * np.pi * 300 * t)).astype("<i2").tobytes())
    return b"".join(parts)


class _HintPolicy(ConversationPolicy):
    """ConversationPolicy that tells the turn detector what it expects (a form field's kind)."""

    def __init__(self, expecting: str | None, **kwargs: str | None) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.expecting = expecting

    async def start(self, ctx: PolicyContext) -> Reply | None:
        reply = await super().start(ctx)
        if reply is not None:
            reply.expecting = self.expecting
        return reply

    async def on_user_turn(self, text: str, ctx: PolicyContext) -> Reply | None:
        reply = await super().on_user_turn(text, ctx)
        if reply is not None:
            reply.expecting = self.expecting
        return reply


class _NoWordTiming:
    """A FakeTTS that hides its word timing, like most real TTSs."""

    def __init__(self, tts: FakeTTS) -> None:
        self.inner = tts
        self.output_format = tts.output_format

    def synthesize(self, text: str) -> AsyncIterator[bytes]:
        return self.inner.synthesize(text)


async def run_scenario(
    scenario: Scenario, config: Config | None = None, *, word_timing: bool = True
) -> Outcome:
    """Play ``scenario`` against a pipeline on fakes (call inside virtual time).

    ``word_timing=False`` hides the fake TTS's word timing, so what the
    caller heard is known to the sentence only.
    """
    config = config or CONFIGS["default"]
    script = [step.words if isinstance(step, Say) else "" for step in scenario.caller
              if not isinstance(step, Quiet)]  # fmt: skip
    stt = FakeSTT(script, interim_ms=config.interim_ms)
    scripted = iter(scenario.replies)

    def reply(messages: Sequence[Message]) -> str:
        # Beyond the script (a backchannel answered as a turn): a stock reply.
        return next(scripted, "Sorry, could you say that again?")

    llm = FakeLLM(reply, ttft=0.25, token_delay=0.03)
    tts = FakeTTS(ttfb=0.1, ms_per_char=60, chunk_ms=100)
    policy = _HintPolicy(scenario.expecting, greeting=scenario.greeting, farewell=scenario.farewell)
    pipeline = Pipeline(
        stt=stt,
        llm=llm,
        tts=tts if word_timing else _NoWordTiming(tts),
        policy=policy,
        input_format=FORMAT,
        realtime_lead=0.2,
        barge_in=config.barge_in,
        turn_detector=config.detector,
    )
    pcm = _audio(scenario)
    step = FORMAT.bytes_for(CHUNK_MS)

    async def caller() -> AsyncIterator[bytes]:
        for start in range(0, len(pcm), step):
            yield pcm[start : start + step]
            await anyio.sleep(CHUNK_MS / 1000)

    outcome = Outcome(scenario)
    began = anyio.current_time()
    with anyio.move_on_after(HANG_AFTER) as scope:
        async with pipeline.run(caller()) as events:
            async for event in events:
                outcome.events.append((anyio.current_time() - began, event))
    outcome.hang = scope.cancelled_caught
    outcome.llm_calls = len(llm.calls)
    outcome.audio_made = sum(tts.audio_bytes(text) for text in tts.texts)
    return outcome


def run(
    scenarios: Sequence[Scenario], config: Config | None = None, backend: str = "asyncio"
) -> list[Outcome]:
    """Every scenario in virtual time, one after the other."""

    async def main() -> list[Outcome]:
        return [await run_scenario(s, config) for s in scenarios]

    return run_virtual(main, backend)


def _ms(values: Sequence[float], how: str = "median") -> str:
    if not values:
        return "-"
    value = statistics.median(values) if how == "median" else max(values)
    return f"{max(0.0, value) * 1000:.0f}"


def summary(outcomes: Sequence[Outcome]) -> dict[str, str | int]:
    """The suite's figures over ``outcomes`` (the issue's list)."""
    turns = sum(len(o.scenario.turns) for o in outcomes)
    false_cutoffs = sum(o.false_cutoffs for o in outcomes)
    plain = [d for o in outcomes if not o.scenario.pauses for d in o.end_of_turn_delays()]
    paused = [d for o in outcomes if o.scenario.pauses for d in o.end_of_turn_delays()]
    held = [d for o in outcomes for d in o.held()]
    return {
        "hangs": sum(o.hang for o in outcomes),
        "missed barge-ins": sum(o.missed_barge_ins for o in outcomes),
        "replies stopped by a backchannel or noise": sum(o.wrongly_stopped for o in outcomes),
        "backchannels answered as turns": sum(o.answered_backchannels for o in outcomes),
        "false cut-offs (turn ended mid-speech)": (
            f"{false_cutoffs}/{turns} ({100 * false_cutoffs / max(turns, 1):.0f} %)"
        ),
        "replies resumed after a false interruption": sum(o.resumes for o in outcomes),
        "replies resumed over a real barge-in (cut later)": sum(o.talked_over for o in outcomes),
        "end of speech to user_turn, median ms (no pauses)": _ms(plain),
        "end of speech to user_turn, worst ms (no pauses)": _ms(plain, "max"),
        "end of speech to user_turn, median ms (pauses)": _ms(paused),
        "turns held after their last word / median hold ms": f"{len(held)} / {_ms(held)}",
        "barge-in: speech start to interrupted, median ms": _ms(
            [d for o in outcomes for d in o.cut_delays()]
        ),
        "false alarm by words: reply paused, median ms": _ms(
            [d for o in outcomes for d in o.pause_times(noise=False)]
        ),
        "false alarm by noise: reply paused, median ms": _ms(
            [d for o in outcomes for d in o.pause_times(noise=True)]
        ),
    }
