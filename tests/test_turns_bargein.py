"""The barge-in judge and the backchannel lists, without a pipeline (times are plain numbers)."""

from __future__ import annotations

import pytest

from voicepipe.turns import Action, Backchannels, BargeIn, BargeInJudge

backchannels = Backchannels()


@pytest.mark.parametrize(
    "text",
    ["uh-huh", "Uh huh.", "mm-hmm", "yeah", "okay", "yeah yeah okay", "right, got it",
     "sí", "vale", "ajá", "sí sí", "ya veo", "claro que sí"],
)  # fmt: skip
def test_backchannels(text: str) -> None:
    assert backchannels.is_backchannel(text)
    assert backchannels.real_words(text) == 0


@pytest.mark.parametrize(
    ("text", "real"),
    [("stop", 1), ("wait what", 2), ("yeah but what about tomorrow", 4), ("no", 1),
     ("okay stop", 1), ("espera un momento", 3), ("", 0)],
)  # fmt: skip
def test_words_that_take_the_turn(text: str, real: int) -> None:
    assert backchannels.real_words(text) == real
    assert not backchannels.is_backchannel(text)


def test_backchannel_lists_are_per_language_and_extensible() -> None:
    english = Backchannels(["en"])
    assert not english.is_backchannel("vale")
    assert Backchannels(["en"], extra=["Right-o"]).is_backchannel("right-o")


def test_speech_pauses_the_reply_and_words_cut_it() -> None:
    judge = BargeInJudge()
    assert judge.speech_started(10.0, replying=True) is Action.PAUSE
    assert judge.paused
    assert judge.speech_started(10.1, replying=True) is Action.NONE  # already paused
    assert judge.text("wait", 10.3, replying=True) is Action.CUT
    assert not judge.paused


def test_words_before_the_minimum_speech_cut_when_it_is_reached() -> None:
    judge = BargeInJudge(BargeIn(min_speech_ms=500))
    judge.speech_started(0.0, replying=True)
    assert judge.text("stop", 0.1, replying=True) is Action.NONE
    assert judge.deadline() == 0.5
    assert judge.tick(0.4) is Action.NONE
    assert judge.tick(0.5) is Action.CUT


def test_min_words_counts_only_words_that_are_not_backchannels() -> None:
    judge = BargeInJudge(BargeIn(min_words=2, min_speech_ms=0))
    judge.speech_started(0.0, replying=True)
    assert judge.text("yeah no", 0.2, replying=True) is Action.NONE  # one real word
    assert judge.text("yeah no wait", 0.3, replying=True) is Action.CUT


def test_a_backchannel_resumes_at_once_and_is_not_a_turn() -> None:
    judge = BargeInJudge()
    judge.speech_started(0.0, replying=True)
    assert judge.text("uh-huh", 0.1, replying=True) is Action.RESUME
    assert judge.user_turn("uh-huh", 0.5, replying=True) == (Action.NONE, False)


def test_a_backchannel_known_only_at_the_end_of_the_turn_resumes_then() -> None:
    judge = BargeInJudge()
    judge.speech_started(0.0, replying=True)
    assert judge.user_turn("vale", 0.6, replying=True) == (Action.RESUME, False)


def test_no_words_within_the_window_resumes() -> None:
    judge = BargeInJudge(BargeIn(resume_after_ms=800))
    judge.speech_started(5.0, replying=True)
    assert judge.deadline() == pytest.approx(5.8)
    assert judge.tick(5.7) is Action.NONE
    assert judge.tick(5.8) is Action.RESUME
    assert not judge.paused and judge.deadline() is None


def test_an_stt_without_interim_words_gets_the_longer_window() -> None:
    judge = BargeInJudge(BargeIn(resume_after_ms=1000, batch_resume_after_ms=3000))
    judge.speech_started(0.0, replying=False)
    judge.text("hello there", 0.9, replying=False, interim=False)  # a final, at the end
    judge.user_turn("hello there", 0.9, replying=False)
    assert judge.batch_stt
    judge.speech_started(5.0, replying=True)
    assert judge.deadline() == pytest.approx(8.0)
    # A streaming STT (words while the caller speaks) keeps the short window.
    judge.text("hold on", 5.2, replying=True, interim=True)
    judge.user_turn("hold on", 5.6, replying=True)
    assert not judge.batch_stt
    judge.speech_started(9.0, replying=True)
    assert judge.deadline() == pytest.approx(10.0)


def test_a_backchannel_then_real_words_cut_the_resumed_reply() -> None:
    judge = BargeInJudge(BargeIn(min_speech_ms=0))
    judge.speech_started(0.0, replying=True)
    assert judge.text("yeah", 0.1, replying=True) is Action.RESUME
    assert judge.text("yeah but what", 0.3, replying=True) is Action.CUT


def test_words_while_the_reply_plays_on_pause_then_cut() -> None:
    # Speech resumed the reply (no words in time); words that arrive later,
    # before the minimum speech, pause it again and cut it when due.
    judge = BargeInJudge(BargeIn(min_speech_ms=300, resume_after_ms=100))
    judge.speech_started(0.0, replying=True)
    assert judge.tick(0.1) is Action.RESUME
    assert judge.text("hold on", 0.2, replying=True) is Action.PAUSE
    assert judge.tick(0.3) is Action.CUT


def test_after_a_question_a_yes_is_an_answer() -> None:
    judge = BargeInJudge()
    judge.speech_started(0.0, replying=True)
    assert judge.text("yes", 0.1, replying=True, question=True) is Action.NONE  # still paused
    assert judge.paused
    assert judge.user_turn("yes", 0.5, replying=True, question=True) == (Action.CUT, True)
    assert judge.user_turn("", 0.5, replying=True, question=True) == (Action.NONE, False)


def test_a_real_turn_always_cuts_even_under_the_thresholds() -> None:
    judge = BargeInJudge(BargeIn(min_words=3))
    judge.speech_started(0.0, replying=True)
    assert judge.user_turn("stop", 0.5, replying=True) == (Action.CUT, True)


def test_without_a_reply_speech_is_just_a_turn() -> None:
    judge = BargeInJudge()
    assert judge.speech_started(0.0, replying=False) is Action.NONE
    assert judge.text("okay", 0.1, replying=False) is Action.NONE
    assert judge.user_turn("okay", 0.5, replying=False) == (Action.NONE, True)  # an answer


def test_the_old_rule_any_speech_cuts() -> None:
    judge = BargeInJudge(BargeIn.any_speech())
    assert judge.speech_started(0.0, replying=True) is Action.CUT
    assert judge.user_turn("uh-huh", 0.5, replying=True) == (Action.CUT, True)
    assert judge.user_turn("", 0.5, replying=False) == (Action.NONE, False)


def test_bad_settings_name_the_fix() -> None:
    with pytest.raises(ValueError, match="cut_on_speech"):
        BargeIn(min_words=0)
    with pytest.raises(ValueError, match="resume_after_ms"):
        BargeIn(resume_after_ms=0)
    with pytest.raises(ValueError, match="batch_resume_after_ms"):
        BargeIn(batch_resume_after_ms=0)
