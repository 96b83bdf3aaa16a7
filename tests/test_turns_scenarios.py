"""Every scenario of the turn-taking suite (benchmarks/turns) as a test of its outcome.

They run in virtual time on asyncio and trio: the caller's audio and the
reply's audio are paced as on a real call, but nothing waits for the wall
clock. Outcomes are asserted, never timings.
"""

from __future__ import annotations

import pytest

from benchmarks.turns.clock import BACKENDS, run_virtual
from benchmarks.turns.harness import CONFIGS, Outcome, run_scenario
from benchmarks.turns.scenarios import SCENARIOS, Scenario


def play(scenario: Scenario, backend: str, config: str = "default") -> Outcome:
    return run_virtual(lambda: run_scenario(scenario, CONFIGS[config]), backend)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_scenario_outcome(scenario: Scenario, backend: str) -> None:
    outcome = play(scenario, backend)
    assert not outcome.hang
    if scenario.splits:  # a known limit of the detector: the turn ends too early
        assert outcome.false_cutoffs == scenario.splits
    else:
        assert outcome.turns == list(scenario.turns)  # whole, no backchannel among them
    assert outcome.cuts == scenario.cuts
    assert outcome.finish == scenario.finish
    if scenario.noise_or_backchannel:
        assert outcome.resumes >= 1
    # One LLM call per scripted reply: a backchannel or a resume never costs
    # another (goodbyes don't reach the LLM and have none).
    assert outcome.llm_calls == len(scenario.replies)
    replies = outcome.replies
    if not scenario.cuts:
        # Every reply went out whole: nothing skipped, nothing repeated.
        assert not any(r.interrupted for r in replies)
        said = [r.content for r in replies]
        assert said == [t for t in (scenario.greeting, *scenario.replies, scenario.farewell) if t]
        assert outcome.audio_sent == outcome.audio_made
    else:
        cut = [r for r in replies if r.interrupted]
        assert len(cut) == scenario.cuts
        for reply in cut:  # history holds a prefix of what was said, up to a word
            script = [t for t in (scenario.greeting, *scenario.replies) if t]
            assert any(s.startswith(reply.content) and reply.content for s in script)


@pytest.mark.parametrize(
    "name", ["backchannels during a reply", "a cough", "pauses inside a phone number"]
)
def test_the_old_rule_fails_where_the_new_one_holds(name: str) -> None:
    """The suite can fail: with 'any speech cuts' and no detector these scenarios go wrong."""
    scenario = next(s for s in SCENARIOS if s.name == name)
    outcome = play(scenario, "asyncio", "today")
    assert outcome.wrongly_stopped or outcome.false_cutoffs
