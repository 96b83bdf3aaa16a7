"""The listen side of turn-taking: STT events in, pauses, resumes, cuts and turns out.

:class:`TurnTaking` sits between the STT and the respond loop. It passes the
STT's events on, asks the :class:`~voicepipe.turns.bargein.BargeInJudge`
what the caller's speech means for the reply in progress, and holds a turn
the :class:`~voicepipe.turns.detector.TurnDetector` finds unfinished until
the caller carries on (the parts are joined) or the wait runs out. It
drives the session through the small :class:`Floor` protocol, so the
pipeline keeps only the hooks.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

import anyio

from voicepipe.events import (
    Event,
    Interrupted,
    Paused,
    Resumed,
    SpeechStarted,
    TranscriptFinal,
    TranscriptInterim,
    UserTurn,
)
from voicepipe.providers.base import Emit, STTEvent
from voicepipe.turns.bargein import Action, BargeIn, BargeInJudge
from voicepipe.turns.detector import TurnDetector

__all__ = ["Floor", "TurnTaking"]


class Floor(Protocol):
    """What turn-taking drives: the session's reply in progress and its turn queue."""

    @property
    def replying(self) -> bool:
        """A reply is in progress (being decided or spoken) and can be paused or cut."""
        ...

    @property
    def expecting(self) -> str | None:
        """The last reply's hint of what the caller's next turn holds (``Reply.expecting``)."""
        ...

    @property
    def asked(self) -> bool:
        """The reply in progress asked the caller something they heard ("yes" answers it)."""
        ...

    def pause(self) -> bool:
        """Hold the reply's output where it is; False if there is nothing to pause."""
        ...

    def resume(self) -> bool:
        """Let a paused reply carry on; False if it was not paused."""
        ...

    def cut(self) -> Interrupted | None:
        """Stop the reply for good; what the caller heard of it, or None if no reply."""
        ...

    async def emit(self, event: Event) -> None: ...

    async def submit(self, text: str, endpoint_ms: float | None, wait_ms: float) -> None:
        """Hand a finished turn to the respond loop (its ``user_turn`` is already out)."""
        ...


@dataclass(slots=True)
class _Held:
    text: str
    endpoint_ms: float | None
    since: float  # when the STT ended (the last part of) the turn
    deadline: float


class TurnTaking:
    """One session's turn-taking, between the STT's events and the :class:`Floor`.

    ``barge_in=None`` turns barge-in off (the caller's speech never touches
    the reply; every turn is answered after it). ``detector=None`` hands
    every turn on as the STT ends it. ``continue_after_ms``: once a held
    turn's caller speaks again, how long without words before the held text
    is handed on as it is.
    """

    def __init__(
        self,
        floor: Floor,
        *,
        barge_in: BargeIn | None = None,
        detector: TurnDetector | None = None,
        continue_after_ms: float = 3000.0,
        clock: Callable[[], float] = anyio.current_time,
    ) -> None:
        self.floor = floor
        self.judge = BargeInJudge(barge_in) if barge_in is not None else None
        self.detector = detector
        self.continue_after = continue_after_ms / 1000
        self.clock = clock
        self._held: _Held | None = None
        self._changed = anyio.Event()

    async def run(self, transcribe: Callable[[Emit], Awaitable[None]]) -> None:
        """Run ``transcribe(self.on_event)`` with the timers, then settle what is pending."""
        error: Exception | None = None
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._timers)
            try:
                await transcribe(self.on_event)
            except Exception as exc:  # raised below as itself, not in an ExceptionGroup
                error = exc
            tg.cancel_scope.cancel()
        if error is not None:
            raise error
        # The caller's audio is over: nobody will carry on or take the floor.
        if self.judge is not None and self.judge.paused:
            self.judge.reset()
            await self._apply(Action.RESUME)
        if self._held is not None:
            await self._release()

    async def on_event(self, event: STTEvent) -> None:
        """The STT's ``emit``."""
        now = self.clock()
        if isinstance(event, UserTurn):
            await self._user_turn(event, now)
        else:
            await self.floor.emit(event)
            if isinstance(event, SpeechStarted):
                if self._held is not None:
                    self._held.deadline = now + self.continue_after
                if self.judge is not None:
                    await self._apply(self.judge.speech_started(now, replying=self.floor.replying))
            elif isinstance(event, TranscriptInterim | TranscriptFinal):
                if self._held is not None:
                    self._held.deadline = max(self._held.deadline, now + self.continue_after)
                if self.judge is not None:
                    replying, asked = self.floor.replying, self.floor.asked
                    action = self.judge.text(
                        event.content,
                        now,
                        replying=replying,
                        question=asked,
                        interim=isinstance(event, TranscriptInterim),
                    )
                    await self._apply(action)
        self._wake()

    async def _user_turn(self, event: UserTurn, now: float) -> None:
        text = event.content.strip()
        if self.judge is not None:
            action, is_turn = self.judge.user_turn(
                text, now, replying=self.floor.replying, question=self.floor.asked
            )
            await self._apply(action)
            if not is_turn:
                return  # a backchannel (or nothing): shown as transcripts, not answered
        elif not text:
            return
        endpoint = event.endpoint_ms
        if self._held is not None:  # the caller carried on: one turn
            text = f"{self._held.text} {text}"
            self._held = None
        wait = 0.0
        if self.detector is not None:
            decision = await self.detector.decide(text, expecting=self.floor.expecting)
            wait = decision.wait
        if wait > 0:
            self._held = _Held(text, endpoint, now, now + wait)
            return
        await self._hand_on(text, endpoint, 0.0)

    async def _release(self) -> None:
        held, self._held = self._held, None
        assert held is not None
        waited = max(0.0, self.clock() - held.since) * 1000
        await self._hand_on(held.text, held.endpoint_ms, waited)

    async def _hand_on(self, text: str, endpoint_ms: float | None, wait_ms: float) -> None:
        wait_ms = round(wait_ms, 3)
        total = None if endpoint_ms is None else round(endpoint_ms + wait_ms, 3)
        await self.floor.emit(UserTurn(content=text, endpoint_ms=total))
        await self.floor.submit(text, total, wait_ms)

    async def _apply(self, action: Action) -> None:
        if action is Action.PAUSE:
            if self.floor.pause():
                await self.floor.emit(Paused())
            elif self.judge is not None:
                self.judge.reset()  # nothing to pause after all
        elif action is Action.RESUME:
            if self.floor.resume():
                await self.floor.emit(Resumed())
        elif action is Action.CUT:
            interrupted = self.floor.cut()
            if interrupted is not None:
                await self.floor.emit(interrupted)

    def _deadline(self) -> float | None:
        times = [
            t
            for t in (
                self.judge.deadline() if self.judge is not None else None,
                self._held.deadline if self._held is not None else None,
            )
            if t is not None
        ]
        return min(times) if times else None

    def _wake(self) -> None:
        self._changed.set()

    async def _timers(self) -> None:
        while True:
            self._changed = anyio.Event()
            deadline = self._deadline()
            if deadline is None:
                await self._changed.wait()
                continue
            with anyio.move_on_after(max(0.0, deadline - self.clock())):
                await self._changed.wait()
                continue
            now = self.clock()
            # Shielded: the end of the input cancels this task, and a pause's
            # `resumed` or a held turn must not be lost half-sent (the STT's own
            # events are never cut off that way).
            with anyio.CancelScope(shield=True):
                if self.judge is not None:
                    await self._apply(self.judge.tick(now))
                if self._held is not None and now >= self._held.deadline:
                    await self._release()
