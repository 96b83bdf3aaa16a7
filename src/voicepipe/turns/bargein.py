"""Barge-in judgement: is the caller's speech during a reply a new turn?

The first moment of speech pauses the reply; what follows decides:

* words that are not backchannels ("wait, which one?"), once there are
  ``min_words`` of them and ``min_speech_ms`` of speech: a real turn, the
  reply is **cut**;
* only backchannels ("uh-huh", "vale"): the reply **resumes** at once and
  the words are not answered as a turn;
* no words within ``resume_after_ms`` (a cough, a door): the reply
  **resumes** from where it paused. An STT that shows no words before the
  end of a turn (a batch STT behind a VAD: Whisper, PocketSphinx) gets
  ``batch_resume_after_ms`` instead, long enough for its turn to end, so a
  real barge-in is not talked over.

:class:`BargeInJudge` is that state machine, plain synchronous code fed
with times, so it is tested without a pipeline and costs microseconds.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

from voicepipe.turns.detector import tokens
from voicepipe.turns.words import BACKCHANNELS, words_for

__all__ = ["Action", "Backchannels", "BargeIn", "BargeInJudge"]


@dataclass(frozen=True, slots=True)
class BargeIn:
    """How the caller's speech during a reply is judged (``Pipeline(barge_in=...)``).

    ``min_words``: words that are not backchannels before the reply is cut.
    ``min_speech_ms``: how long the caller must have been speaking (since
    ``speech_started``) before the reply is cut. ``resume_after_ms``: with
    no words for this long, the pause was a false alarm and the reply
    resumes; ``batch_resume_after_ms`` replaces it once the session's STT has
    ended a turn without showing words first (it only transcribes at the end
    of a turn, so "no words yet" means nothing). ``languages`` picks the
    backchannel lists
    (:mod:`voicepipe.turns.words`); ``extra_backchannels`` adds your own.
    ``cut_on_speech=True`` is the old behaviour: any speech cuts the reply
    at once (no pause, no resume, backchannels are turns).
    """

    min_words: int = 1
    min_speech_ms: float = 200.0
    resume_after_ms: float = 1000.0
    batch_resume_after_ms: float = 3000.0
    languages: Sequence[str] = ("en", "es")
    extra_backchannels: Collection[str] = field(default_factory=frozenset)
    cut_on_speech: bool = False

    def __post_init__(self) -> None:
        if self.min_words < 1:
            raise ValueError("min_words must be >= 1; for 'any speech cuts' use cut_on_speech")
        if self.min_speech_ms < 0 or min(self.resume_after_ms, self.batch_resume_after_ms) <= 0:
            raise ValueError(
                "min_speech_ms must be >= 0, resume_after_ms and batch_resume_after_ms > 0"
            )

    @classmethod
    def any_speech(cls) -> BargeIn:
        """The behaviour before pause and resume: any speech cuts the reply at once."""
        return cls(cut_on_speech=True)


class Backchannels:
    """Tells acknowledgements ("uh-huh", "yeah", "sí", "vale") from words that take the turn."""

    def __init__(self, languages: Sequence[str] = ("en", "es"), extra: Collection[str] = ()):
        self._phrases, self._longest = _phrases(tuple(languages), frozenset(extra))

    def real_words(self, text: str) -> int:
        """How many words of ``text`` are not part of a backchannel phrase."""
        words = tokens(text)
        count = index = 0
        while index < len(words):
            for size in range(min(self._longest, len(words) - index), 0, -1):
                if " ".join(words[index : index + size]) in self._phrases:
                    index += size
                    break
            else:
                count += 1
                index += 1
        return count

    def is_backchannel(self, text: str) -> bool:
        """True when ``text`` has words and every one belongs to a backchannel."""
        return bool(tokens(text)) and self.real_words(text) == 0


@functools.lru_cache(maxsize=64)
def _shared(languages: tuple[str, ...], extra: frozenset[str]) -> Backchannels:
    """One :class:`Backchannels` per word lists, shared by the sessions (it holds no state)."""
    return Backchannels(languages, extra)


@functools.lru_cache(maxsize=64)
def _phrases(languages: tuple[str, ...], extra: frozenset[str]) -> tuple[frozenset[str], int]:
    """The backchannel phrases and the longest one's word count, built once per word lists."""
    merged = words_for(BACKCHANNELS, languages) | {" ".join(tokens(p)) for p in extra}
    phrases = frozenset(p for p in merged if p)
    return phrases, max((len(p.split()) for p in phrases), default=1)


class Action(enum.Enum):
    """What the judge asks of the reply in progress."""

    NONE = "none"
    PAUSE = "pause"
    RESUME = "resume"
    CUT = "cut"


class BargeInJudge:
    """The barge-in state machine of one session (times in seconds, any clock)."""

    def __init__(self, config: BargeIn | None = None) -> None:
        self.config = config or BargeIn()
        self.backchannels = _shared(
            tuple(self.config.languages), frozenset(self.config.extra_backchannels)
        )
        self.paused_at: float | None = None  # the reply is paused since then
        self._heard_at = 0.0  # last sign of the caller (speech start or words) while paused
        self._speech_at = 0.0  # when the caller's current speech started
        self._cut_due: float | None = None  # enough words; cut once the speech is long enough
        self.batch_stt = False  # the STT shows no words before a turn ends
        self._interim_seen = False  # words came while the caller was still speaking

    @property
    def paused(self) -> bool:
        return self.paused_at is not None

    def reset(self) -> None:
        self.paused_at = self._cut_due = None

    def speech_started(self, now: float, *, replying: bool) -> Action:
        self._speech_at = now
        self._interim_seen = False
        if not replying:
            self.reset()
            return Action.NONE
        if self.config.cut_on_speech:
            return Action.CUT
        if self.paused_at is None:
            self.paused_at = self._heard_at = now
            return Action.PAUSE
        self._heard_at = now
        return Action.NONE

    def text(
        self,
        text: str,
        now: float,
        *,
        replying: bool,
        question: bool = False,
        interim: bool = True,
    ) -> Action:
        """Interim (or final) words of the caller's current speech.

        After a ``question`` (see :meth:`user_turn`) a backchannel may be the
        answer: the reply stays paused until the turn ends.
        """
        if interim and tokens(text):
            self._interim_seen = True
        if not replying or self.config.cut_on_speech:
            self.reset()
            return Action.NONE
        real = self.backchannels.real_words(text)
        if real >= self.config.min_words:
            due = self._speech_at + self.config.min_speech_ms / 1000
            if now >= due:
                self.reset()
                return Action.CUT
            if self.paused_at is None:  # words while the reply plays on: pause, then cut
                self.paused_at = now
                self._cut_due = due
                return Action.PAUSE
            self._cut_due = due
            return Action.NONE
        if self.paused_at is not None and real == 0 and tokens(text) and not question:
            self.reset()  # only backchannels so far: carry on talking
            return Action.RESUME
        if self.paused_at is not None:
            self._heard_at = now
        return Action.NONE

    def user_turn(
        self, text: str, now: float, *, replying: bool, question: bool = False
    ) -> tuple[Action, bool]:
        """The STT ended the caller's turn: what to do with the reply, and is it a turn?

        ``question``: the reply has asked something (its last sentence out is a
        question, or it expects a yes/no or a choice), so "yes" or "okay" is an
        answer, not a backchannel.
        """
        said = bool(tokens(text))
        if said:  # did this STT show words before the end of the turn?
            self.batch_stt = not self._interim_seen
        self._interim_seen = False
        if self.config.cut_on_speech:
            return (Action.CUT if replying else Action.NONE), said
        paused = self.paused_at is not None
        if not replying and not paused:
            return Action.NONE, said
        self.reset()
        if question and said:
            return Action.CUT, True
        if self.backchannels.real_words(text) == 0:
            return (Action.RESUME if paused else Action.NONE), False
        return Action.CUT, True  # a real turn takes the floor, whatever its length

    def deadline(self) -> float | None:
        """When :meth:`tick` has something to do, if ever."""
        if self.paused_at is None:
            return None
        if self._cut_due is not None:
            return self._cut_due
        window = (
            self.config.batch_resume_after_ms if self.batch_stt else self.config.resume_after_ms
        )
        return self._heard_at + window / 1000

    def tick(self, now: float) -> Action:
        due = self.deadline()
        if due is None or now < due:
            return Action.NONE
        action = Action.CUT if self._cut_due is not None else Action.RESUME
        self.reset()
        return action
