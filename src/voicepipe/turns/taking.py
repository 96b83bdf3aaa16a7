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

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import anyio
from anyio.abc import TaskGroup

from voicepipe.clock import now
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
from voicepipe.providers.base import STTEvent
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
    is handed on as it is. ``task_group`` runs the timers (a paused reply's
    resume, a held turn's release) while one is due.

    The STT's ``emit`` is :meth:`on_event`; when the STT is done, :meth:`stop`
    (it failed) or :meth:`settle` (the audio is over: a paused reply resumes,
    a held turn is handed on).
    """

    def __init__(
        self,
        floor: Floor,
        *,
        task_group: TaskGroup,
        barge_in: BargeIn | None = None,
        detector: TurnDetector | None = None,
        continue_after_ms: float = 3000.0,
        clock: Callable[[], float] = now,
    ) -> None:
        self.floor = floor
        self.judge = BargeInJudge(barge_in) if barge_in is not None else None
        self.detector = detector
        self.continue_after = continue_after_ms / 1000
        self.clock = clock
        self._task_group = task_group  # where the timers run while something is due
        self._timers_scope: anyio.CancelScope | None = None  # set while the timers run
        self._timers_done: anyio.Event | None = None  # set when they stop
        self._stopped = False
        self._held: _Held | None = None
        self._changed: anyio.Event | None = None  # the timers' wake-up, while they run

    def stop(self) -> None:
        """The STT is done (or failed): stop the timers."""
        self._stopped = True
        if self._timers_scope is not None:
            self._timers_scope.cancel()

    async def settle(self) -> None:
        """The caller's audio is over: nobody will carry on or take the floor."""
        if self._timers_scope is not None and self._timers_done is not None:
            self.stop()
            await self._timers_done.wait()  # what they were sending (shielded) is out
        self.stop()
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
        """The next time the timers have something to do (after every STT event: no lists)."""
        judged = self.judge.deadline() if self.judge is not None else None
        held = self._held.deadline if self._held is not None else None
        if judged is None or held is None:
            return held if judged is None else judged
        return min(judged, held)

    def _wake(self) -> None:
        """Something changed: the timers look again, or start if something is now due.

        The timers run as a task only while a deadline is pending (a paused
        reply, a held turn), not for the whole session: most of a session
        has nothing due, and a task per session costs every session.
        """
        if self._timers_scope is not None:
            if self._changed is not None:
                self._changed.set()
        elif not self._stopped and self._deadline() is not None:
            self._timers_scope = scope = anyio.CancelScope()
            self._timers_done = anyio.Event()
            self._task_group.start_soon(self._timers, scope)

    async def _timers(self, scope: anyio.CancelScope) -> None:
        with scope:
            try:
                while not self._stopped:
                    self._changed = anyio.Event()
                    deadline = self._deadline()
                    if deadline is None:
                        return  # nothing due: _wake starts the timers again when needed
                    with anyio.move_on_after(max(0.0, deadline - self.clock())):
                        await self._changed.wait()
                        continue
                    now = self.clock()
                    # Shielded: the end of the input cancels this task, and a
                    # pause's `resumed` or a held turn must not be lost half-sent
                    # (the STT's own events are never cut off that way).
                    with anyio.CancelScope(shield=True):
                        if self.judge is not None:
                            await self._apply(self.judge.tick(now))
                        if self._held is not None and now >= self._held.deadline:
                            await self._release()
            finally:
                self._timers_scope = None
                if self._timers_done is not None:
                    self._timers_done.set()
