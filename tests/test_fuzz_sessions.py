"""The session contract under random timing (issue 17): generated timelines through a
real Pipeline on virtual time, asyncio and trio, each checked by voicepipe.testing.

CI runs a bounded, seeded number of examples; ``make fuzz`` runs the long soak
(benchmarks/fuzz_soak.py). Timelines the fuzzer once broke are kept below as
regression tests, in their shrunk form.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, seed, settings

from tests import virtual_time
from tests.fuzz_sessions import Timeline, run_timeline, timelines

BACKENDS = ["asyncio", "trio"]


def check(timeline: Timeline, backend: str, *, virtual: bool = True) -> None:
    async def main() -> list[str]:
        outcome = await run_timeline(timeline)
        return [v.describe(outcome.events) for v in outcome.violations]

    found = virtual_time.run(main, backend, virtual=virtual)
    assert not found, "\n".join(found)


@pytest.mark.parametrize("backend", BACKENDS)
@seed(17)
@settings(
    max_examples=100,
    deadline=None,
    derandomize=False,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(timeline=timelines())
def test_random_timelines_keep_the_contract(backend: str, timeline: Timeline) -> None:
    check(timeline, backend)


@pytest.mark.parametrize("backend", BACKENDS)
@seed(1017)
@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(timeline=timelines())
def test_random_timelines_keep_the_contract_in_real_time(backend: str, timeline: Timeline) -> None:
    # Real scheduling shows races virtual time hides; few examples, short ones.
    short = Timeline(
        **{
            **timeline.__dict__,
            "audio": tuple((kind, min(ms, 200)) for kind, ms in timeline.audio[:4]),
            "cancel_at": None if timeline.cancel_at is None else min(timeline.cancel_at, 1.0),
            "hang_up": True,
        }
    )
    check(short, backend, virtual=False)


# -- timelines the fuzzer broke, shrunk, kept -------------------------------------

FOUND = {
    # The issue-17 race: the caller speaks 20 ms into a paced greeting; the
    # chunk whose pacing sleep had just returned went out after `interrupted`.
    # Fixed by the cut check before every emit of reply audio or text.
    "audio-after-interrupted": Timeline(
        audio=(("speech", 20),),
        hang_up=False,
        greeting="Sure.",
        stt_silence_ms=100,
        llm_replies=("",),
        tts_chunk_ms=20,
        realtime_lead=0.0,
        barge_in="any",
        event_buffer=2,
    ),
    # A slow consumer (one-event buffer): a sentence's assistant_delta was
    # counted as spoken, then waited for room; the cut cancelled that send, so
    # `interrupted` and `assistant` reported a sentence the consumer never got.
    # Fixed: a reply piece waiting for room is delivered ahead of the
    # `interrupted` (sends are first come, first served); only the session's
    # end drops it.
    "spoken-but-never-sent": Timeline(
        audio=(("speech", 20), ("silence", 300), ("speech", 20)),
        hang_up=False,
        stt_silence_ms=200,
        llm_replies=("Sure. what we have.",),
        tts_chunk_ms=20,
        tts_drop_at_chunk=1,
        barge_in="any",
        event_buffer=1,
        read_delay=0.05,
    ),
    # The STT fails for good while a paced greeting is paused by the caller's
    # speech: the fatal error cut the reply (assistant said interrupted: true)
    # but no `interrupted` went out, so the `paused` never ended. Fixed: the
    # fatal path emits the cut's `interrupted` like any other cut.
    "fatal-error-while-paused": Timeline(
        audio=(("speech", 20),),
        hang_up=False,
        greeting="Sure.",
        stt_silence_ms=100,
        stt_fail_at_chunk=0,
        llm_replies=("",),
        tts_chunk_ms=20,
        realtime_lead=0.1,
        event_buffer=1,
    ),
}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", sorted(FOUND))
def test_timelines_the_fuzzer_found(backend: str, name: str) -> None:
    check(FOUND[name], backend)
