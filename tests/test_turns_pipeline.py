"""Turn-taking inside the Pipeline: pause, resume, cut, heard means heard, held turns.

Runs on the timeline harness (benchmarks/turns) in virtual time on asyncio
and trio, so the caller talks over a reply at an exact moment; outcomes
are asserted, not timings.
"""

from __future__ import annotations

import math

import pytest

from benchmarks.turns.clock import BACKENDS, run_virtual
from benchmarks.turns.harness import CONFIGS, Config, Outcome, run_scenario
from benchmarks.turns.scenarios import STORY, WEATHER, Noise, Quiet, Say, Scenario
from voicepipe import (
    AssistantDelta,
    AudioChunk,
    BargeIn,
    Interrupted,
    Metrics,
    Paused,
    Resumed,
    TranscriptFinal,
    UserTurn,
)
from voicepipe.turns import LocalTurnDetector

pytestmark = pytest.mark.parametrize("backend", BACKENDS)

ASK = Say("tell me a story", 1000)


def play(
    scenario: Scenario, backend: str, config: Config | None = None, *, word_timing: bool = True
) -> Outcome:
    return run_virtual(lambda: run_scenario(scenario, config, word_timing=word_timing), backend)


def kinds(outcome: Outcome) -> list[str]:
    """Event types without audio, transcripts-in-progress and metrics."""
    skip = {"audio", "transcript_interim", "metrics", "assistant_delta"}
    return [e.type for _, e in outcome.events if e.type not in skip]


def test_speech_pauses_at_once_and_a_real_turn_cuts(backend: str) -> None:
    scenario = Scenario(
        "cut", (ASK, Quiet(2500), Say("stop right there", 900), Quiet(4000)),
        replies=(STORY, "Okay."),
    )  # fmt: skip
    outcome = play(scenario, backend)
    sequence = [e.type for _, e in outcome.events if e.type != "audio"]
    barge = sequence.index("speech_started", sequence.index("assistant_delta"))
    assert sequence[barge : barge + 2] == ["speech_started", "paused"]
    cut = sequence.index("interrupted")
    assert cut > barge and "transcript_interim" in sequence[barge:cut]  # words decided it
    # Nothing of the reply goes out between the pause and its end.
    paused_at = next(i for i, (_, e) in enumerate(outcome.events) if isinstance(e, Paused))
    tail = [e for _, e in outcome.events[paused_at:]]
    first_after = next(i for i, e in enumerate(tail) if e.type == "assistant")
    assert not any(isinstance(e, AudioChunk | AssistantDelta) for e in tail[:first_after])
    assert outcome.turns == ["tell me a story", "stop right there"]
    assert outcome.llm_calls == 2


def test_a_backchannel_resumes_the_reply_whole(backend: str) -> None:
    scenario = Scenario(
        "bc", (Say("weather please", 1000), Quiet(2500), Say("uh-huh", 300), Quiet(7000)),
        replies=(WEATHER,),
    )  # fmt: skip
    outcome = play(scenario, backend)
    assert kinds(outcome)[-6:] == [
        "speech_started", "paused", "resumed", "transcript_final", "assistant", "finish",
    ]  # fmt: skip
    finals = [e.content for _, e in outcome.events if isinstance(e, TranscriptFinal)]
    assert finals == ["weather please", "uh-huh"]  # shown as a transcript ...
    assert outcome.turns == ["weather please"]  # ... not answered as a turn
    (reply,) = outcome.replies
    assert reply.content == WEATHER and not reply.interrupted
    assert outcome.audio_sent == outcome.audio_made  # nothing skipped or repeated
    assert outcome.llm_calls == 1


def test_a_noise_resumes_after_the_window(backend: str) -> None:
    scenario = Scenario(
        "cough", (Say("weather please", 1000), Quiet(2500), Noise(150), Quiet(7000)),
        replies=(WEATHER,),
    )  # fmt: skip
    outcome = play(scenario, backend, Config("window", BargeIn(resume_after_ms=700)))
    paused = [t for t, e in outcome.events if isinstance(e, Paused)]
    resumed = [t for t, e in outcome.events if isinstance(e, Resumed)]
    assert len(paused) == len(resumed) == 1
    assert resumed[0] - paused[0] == pytest.approx(0.7)
    assert outcome.replies[0].content == WEATHER
    assert outcome.audio_sent == outcome.audio_made


def test_resumed_audio_continues_where_playback_paused(backend: str) -> None:
    # Paced reply audio goes out as if played in real time: the audio after the
    # resume starts where the client's buffer ends, not earlier or later.
    scenario = Scenario(
        "cough", (Say("weather please", 1000), Quiet(2500), Noise(150), Quiet(7000)),
        replies=(WEATHER,),
    )  # fmt: skip
    outcome = play(scenario, backend)
    audio = [(t, e) for t, e in outcome.events if isinstance(e, AudioChunk)]
    sent = sum(e.format.duration(len(e.audio)) for _, e in audio)
    (paused,) = [t for t, e in outcome.events if isinstance(e, Paused)]
    (resumed,) = [t for t, e in outcome.events if isinstance(e, Resumed)]
    # Real-time pacing, 0.2 s ahead: the last chunk leaves 0.2 s before it plays,
    # and playback ends as late as the pause lasted, no more, no less.
    start, (last_at, last) = audio[0][0], audio[-1]
    ends = last_at + 0.2 + last.format.duration(len(last.audio))
    assert ends == pytest.approx(start + sent + (resumed - paused), abs=1e-6)


def test_heard_means_heard_to_the_word_with_word_timing(backend: str) -> None:
    scenario = Scenario(
        "cut", (ASK, Quiet(2500), Say("stop right there", 900), Quiet(4000)),
        replies=(STORY, "Okay."),
    )  # fmt: skip
    outcome = play(scenario, backend)
    (paused,) = [t for t, e in outcome.events if isinstance(e, Paused)]
    first_audio = next(t for t, e in outcome.events if isinstance(e, AudioChunk))
    played = paused - first_audio  # the client plays from the first chunk on, in real time
    first_sentence = "Once upon a time there was a small village by the sea."
    assert played < len(first_sentence) * 0.06  # the pause came mid-sentence
    words = [w for i, w in enumerate(first_sentence.split())
             if len(" ".join(first_sentence.split()[:i])) + (i > 0) < played / 0.06]  # fmt: skip
    (interrupted,) = [e for _, e in outcome.events if isinstance(e, Interrupted)]
    assert interrupted.content == " ".join(words)
    assert outcome.replies[0].content == interrupted.content and outcome.replies[0].interrupted
    assert 0 < len(words) < len(first_sentence.split())


def test_heard_means_heard_to_the_sentence_without_word_timing(backend: str) -> None:
    scenario = Scenario(
        "cut", (ASK, Quiet(2500), Say("stop right there", 900), Quiet(4000)),
        replies=(STORY, "Okay."),
    )  # fmt: skip
    outcome = play(scenario, backend, word_timing=False)
    (interrupted,) = [e for _, e in outcome.events if isinstance(e, Interrupted)]
    # The pause came mid-sentence (see the test above): the whole sentence counts.
    assert interrupted.content == "Once upon a time there was a small village by the sea."


def test_the_old_rule_stays_available(backend: str) -> None:
    scenario = Scenario(
        "bc", (Say("weather please", 1000), Quiet(2500), Say("uh-huh", 300), Quiet(3000)),
        replies=(WEATHER, "Yes?"),
    )  # fmt: skip
    outcome = play(scenario, backend, CONFIGS["today"])
    sequence = kinds(outcome)
    barge = sequence.index("speech_started", sequence.index("user_turn"))
    assert sequence[barge : barge + 2] == ["speech_started", "interrupted"]
    assert "paused" not in sequence and "resumed" not in sequence
    assert outcome.turns == ["weather please", "uh-huh"]


def test_barge_in_off_answers_everything_in_turn(backend: str) -> None:
    scenario = Scenario(
        "bc", (Say("weather please", 1000), Quiet(2500), Say("uh-huh", 300), Quiet(9000)),
        replies=(WEATHER, "Yes?"),
    )  # fmt: skip
    outcome = play(scenario, backend, Config("off", False, False))
    assert outcome.cuts == 0 and outcome.resumes == 0
    assert outcome.turns == ["weather please", "uh-huh"]
    assert [r.content for r in outcome.replies] == [WEATHER, "Yes?"]


def test_an_unfinished_turn_is_held_and_joined(backend: str) -> None:
    scenario = Scenario(
        "held", (Say("a table for", 900), Quiet(900), Say("four", 300), Quiet(3000)),
        replies=("Done.",),
    )  # fmt: skip
    outcome = play(scenario, backend)
    assert outcome.turns == ["a table for four"]
    (metrics,) = [e for _, e in outcome.events if isinstance(e, Metrics)]
    assert metrics.end_of_turn_wait_ms == 0  # the last part sounded finished


def test_a_turn_held_to_the_end_of_its_wait_reports_it(backend: str) -> None:
    scenario = Scenario("held", (Say("a table for", 900), Quiet(3000)), replies=("For how many?",))
    outcome = play(scenario, backend, Config("short", True, LocalTurnDetector(unfinished_wait=0.5)))
    assert outcome.turns == ["a table for"]
    (turn,) = [e for _, e in outcome.events if isinstance(e, UserTurn)]
    (metrics,) = [e for _, e in outcome.events if isinstance(e, Metrics)]
    assert metrics.end_of_turn_wait_ms == pytest.approx(500, abs=1)
    assert metrics.stt_endpoint_ms is not None and turn.endpoint_ms is not None
    assert math.isclose(metrics.stt_endpoint_ms, turn.endpoint_ms)
    assert turn.endpoint_ms >= 500  # the STT's silence plus the detector's hold


def test_without_a_detector_a_pause_splits_the_turn(backend: str) -> None:
    scenario = Scenario(
        "split", (Say("a table for", 900), Quiet(900), Say("four", 300), Quiet(3000)),
        replies=("For how many?", "Done."),
    )  # fmt: skip
    outcome = play(scenario, backend, CONFIGS["no detector"])
    assert outcome.turns == ["a table for", "four"]


def test_what_the_policy_expects_raises_the_wait(backend: str) -> None:
    caller = (Quiet(2500), Say("six one two", 900), Quiet(1300), Say("three four", 700),
              Quiet(3000))  # fmt: skip
    asked = Scenario("phone", caller, replies=("Thanks.",), greeting="Your number?",
                     expecting="phone")  # fmt: skip
    assert play(asked, backend).turns == ["six one two three four"]
    free = Scenario("free", caller, replies=("Thanks.", "Thanks."), greeting="Your number?")
    assert play(free, backend).turns == ["six one two", "three four"]


def test_end_of_input_hands_on_a_held_turn(backend: str) -> None:
    scenario = Scenario("eoi", (Say("a table for", 900), Quiet(400)), replies=("For how many?",))
    outcome = play(scenario, backend)
    assert outcome.turns == ["a table for"]
    assert [r.content for r in outcome.replies] == ["For how many?"]


def test_every_pause_ends_in_resume_or_cut(backend: str) -> None:
    scenario = Scenario(
        "mixed",
        (ASK, Quiet(2300), Noise(200), Quiet(1500), Say("yeah", 300), Quiet(900),
         Say("wait which village", 1200), Quiet(4000)),
        replies=(STORY, "The one by the sea."),
    )  # fmt: skip
    outcome = play(scenario, backend)
    open_pause = False
    for _, event in outcome.events:
        if isinstance(event, Paused):
            assert not open_pause
            open_pause = True
        elif isinstance(event, Resumed | Interrupted):
            assert open_pause
            open_pause = False
        elif event.type in ("assistant", "finish"):
            assert not open_pause
    assert outcome.resumes == 2 and outcome.cuts == 1
