"""Heard means heard: what of a paced reply the caller's playback has reached.

With real-time pacing (``Pipeline(realtime_lead=...)``) the pipeline knows
when each chunk of reply audio plays on the client. :class:`Playback` keeps
where each sentence starts in the reply's audio, so that at a cut the
history holds what was played up to the interruption: to the word when the
TTS gives word timing (a ``word_offsets(text)`` method), to the sentence
otherwise (a sentence counts once its audio has started playing).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = ["Playback", "word_offsets"]


def word_offsets(tts: object, text: str) -> Sequence[float] | None:
    """Seconds from the start of ``text``'s audio to each of its words, if ``tts`` can tell.

    A TTS gives word timing with a ``word_offsets(text) -> Sequence[float] |
    None`` method, one offset per whitespace-separated word of ``text``.
    """
    method = getattr(tts, "word_offsets", None)
    if method is None:
        return None
    offsets: Sequence[float] | None = method(text.strip())
    return offsets


@dataclass(slots=True)
class _Mark:
    text: str
    start: float  # seconds into the reply's audio
    offsets: Sequence[float] | None


@dataclass(slots=True)
class Playback:
    """One reply's audio timeline on the caller's side (seconds of reply audio)."""

    marks: list[_Mark] = field(default_factory=list)
    sent: float = 0.0  # seconds of reply audio sent to the client
    frozen: float | None = None  # the position when playback was paused

    def sentence(self, text: str, offsets: Sequence[float] | None) -> None:
        """``text``'s audio starts with the next chunk sent."""
        self.marks.append(_Mark(text, self.sent, offsets))

    def played(self, duration: float) -> None:
        """A chunk of ``duration`` seconds was sent (it plays after what was sent before)."""
        self.sent += duration

    def position(self, now: float, play_until: float) -> float:
        """Seconds of this reply played by ``now`` (the client plays until ``play_until``)."""
        if self.frozen is not None:
            return self.frozen
        return max(0.0, self.sent - max(0.0, play_until - now))

    def pause(self, now: float, play_until: float) -> None:
        self.frozen = self.position(now, play_until)

    def resume(self) -> None:
        self.frozen = None

    def heard(self, now: float, play_until: float) -> str:
        """The reply text the caller has heard by ``now``."""
        position = self.position(now, play_until)
        out: list[str] = []
        for index, mark in enumerate(self.marks):
            if mark.start >= position:
                break
            end = self.marks[index + 1].start if index + 1 < len(self.marks) else self.sent
            if position >= end or mark.offsets is None:
                out.append(mark.text)
                continue
            words = mark.text.split()
            into = position - mark.start
            count = sum(1 for offset in mark.offsets[: len(words)] if offset < into)
            if count:
                lead = mark.text[: len(mark.text) - len(mark.text.lstrip())]
                out.append(lead + " ".join(words[:count]))
            break
        return "".join(out)
