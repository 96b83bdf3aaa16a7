"""One running session's shared state: its event stream, the reply in flight, the floor.

:class:`LiveSession` is what the pipeline's listen and respond loops share:
it emits events to the consumer (a consumer that left ends the session
quietly), holds the reply in progress, and implements turn-taking's
:class:`~voicepipe.turns.Floor`: pause, resume and cut, with the ordering
rules of the session contract (nothing of a reply after its ``interrupted``,
nothing of a paused reply before ``resumed``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import anyio

from voicepipe import clock
from voicepipe.channel import Sender
from voicepipe.events import AudioChunk, Event, Interrupted, Resumed
from voicepipe.providers.base import Expectation
from voicepipe.speaking import ReplyState, Speaker

__all__ = ["LiveSession", "Playback", "QueuedTurn"]


@dataclass(slots=True)
class QueuedTurn:
    """A finished user turn waiting for the respond loop."""

    text: str
    ended_at: float
    announce: bool = False  # emit the user_turn event when the reply starts (text mode)
    endpoint_ms: float | None = None  # the STT's wait after the last word (+ the detector's)
    wait_ms: float | None = None  # the end-of-turn detector's hold


class Playback(Protocol):
    """A client that says what it has actually played (Twilio's marks). Set as
    ``Pipeline.playback``: a reply then lasts until it is played, and an
    interrupted reply's history keeps only what was heard."""

    def heard(self, spoken: Sequence[str]) -> Sequence[str]:
        """Of the reply's sentences sent so far, the leading ones actually played."""
        ...

    async def played(self, upto: int) -> None:
        """Return once the first ``upto`` bytes of the session's reply audio were played."""
        ...


class LiveSession:
    """Per-run state shared by the listen and respond loops; the turn-taking :class:`Floor`.

    ``scope`` is the whole session's: a consumer that has left (the event
    stream is closed) cancels it, which ends the session quietly.
    """

    def __init__(
        self,
        send: Sender[Event],
        *,
        paced: bool,
        playback: Playback | None = None,
    ) -> None:
        self.send = send
        self.scope: anyio.CancelScope | None = None  # the running session's (see _left)
        self._inflight: anyio.CancelScope | None = None  # a reply piece waiting for room
        self.outlasting: list[anyio.CancelScope] | None = None  # see outlast_cut
        self._resuming = False  # resume() was called: the gate opens once `resumed` is out
        self._announced: anyio.Event | None = None  # set once a cut's `interrupted` is out
        self.paced = paced
        self.playback = playback  # a client that reports what it played
        self.audio_bytes = 0  # reply audio emitted so far (what Playback.played counts)
        self.expecting: str | None = None  # the last reply's Reply.expecting
        self.expect = Expectation()  # the same, as the STT's hint (Reply.hint)
        self.turn_queue: Sender[QueuedTurn] | None = None
        self._gate: anyio.Event | None = None  # set while the reply is paused
        self._paused_at = 0.0
        self.gone = False  # the consumer closed the event stream
        self.failed = False  # a fatal error: nothing more of any reply goes out
        self.ended = False  # the session's task is over
        self.speaker: Speaker | None = None
        self.reply_scope: anyio.CancelScope | None = None
        self.reply_state: ReplyState | None = None
        self.finish_reason = "end_of_input"
        self.turns = 0
        self.play_until = 0.0

    async def emit(self, event: Event) -> None:
        """Send ``event`` to the consumer; if it has left, end the session instead.

        Leaving early is a normal end: the emit that finds the stream closed
        (from any task: the STT's, a reply's) cancels the session rather than
        failing the stage that happened to be talking.
        """
        try:
            if self.gone:
                return
            if isinstance(event, AudioChunk):
                self.audio_bytes += len(event.audio)
            try:
                if not self.send.offer(event):  # (no coroutine either when there is room)
                    await self.send.send(event)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                await self._left()
        finally:
            if self._resuming and isinstance(event, Resumed):
                self._unpause()  # `resumed` is out: now the reply may carry on
            elif self._announced is not None and isinstance(event, Interrupted):
                self._announced.set()  # the cut reply may close (see after_cut)
                self._announced = None

    async def deliver(self, event: Event) -> None:
        """Emit a piece of the reply that counts as spoken once it is sent.

        Once it waits for room in the event stream, a cut does not take it
        back: sends go out first come, first served, so it reaches the
        consumer ahead of the ``interrupted`` that counted it as spoken.
        Only the end of the session (:meth:`abandon`) drops it.
        """
        if self.gone:
            return
        try:
            self.send.send_nowait(event)
            return
        except anyio.WouldBlock:
            pass
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            await self._left()
            return
        with anyio.CancelScope(shield=True) as guard:
            self._inflight = guard
            try:
                await self.send.send(event)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                self.gone = True
                self.end_outlasting()
                if self.scope is not None:
                    self.scope.cancel()
            finally:
                self._inflight = None

    def abandon(self) -> None:
        """The session is over: drop a reply piece still waiting for room."""
        if self._inflight is not None:
            self._inflight.cancel()
        self.end_outlasting()

    def outlast_cut(self, scope: anyio.CancelScope) -> None:
        """Have ``scope`` (shielded, so a cut does not reach it) cancelled when the session ends.

        The reply's work that a barge-in must let finish (a tool round) must
        still not hold a session whose caller has left for its whole timeout.
        """
        if self.gone or self.failed:
            scope.cancel()
        elif self.outlasting is None:
            self.outlasting = [scope]
        else:
            self.outlasting.append(scope)

    def end_outlasting(self) -> None:
        """Cancel the scopes registered with :meth:`outlast_cut`: the session is ending."""
        scopes, self.outlasting = self.outlasting, None
        for scope in scopes or ():
            scope.cancel()

    async def _left(self) -> None:
        self.gone = True
        self.end_outlasting()
        if self.scope is not None:
            self.scope.cancel()
        await anyio.lowlevel.checkpoint_if_cancelled()

    # -- Floor (voicepipe.turns) --------------------------------------------

    @property
    def replying(self) -> bool:
        state = self.reply_state
        return state is not None and not state.finished and not state.interrupted

    @property
    def asked(self) -> bool:
        state = self.reply_state
        if state is None:
            return False
        if self.expecting in ("yes_no", "choice"):
            return True
        if self.paced:  # what the caller has heard so far asks something
            return "?" in state.playback.heard(clock.now(), self.play_until)
        return "?" in "".join(state.spoken)

    def pause(self) -> bool:
        """Hold the reply's audio and text where they are (the caller may be taking the floor)."""
        state = self.reply_state
        if state is None or not self.replying:
            return False
        if self._gate is not None and not self._resuming:
            return False
        # (A resume not yet announced is called off: the reply stays paused.)
        now = clock.now()
        self._gate, self._paused_at = self._gate or anyio.Event(), now
        self._resuming = False
        if self.paced:
            state.playback.pause(now, self.play_until)
        return True

    def resume(self) -> bool:
        """Let a paused reply carry on; the client's buffer plays on from where it stopped."""
        if self._gate is None or self._resuming:  # not paused, or already resuming
            return False
        now = clock.now()
        if self.play_until > self._paused_at:  # the client still holds that much audio
            self.play_until += now - self._paused_at
        if self.reply_state is not None:
            self.reply_state.playback.resume()
        # The reply carries on once `resumed` is sent (see emit), never ahead of it.
        self._resuming = True
        return True

    def cut(self) -> Interrupted | None:
        """Stop the reply in progress, if any, and say what of it the caller heard.

        Barge-in stops speech, never a decision: while the policy is still
        working out the reply (a form answer being judged and stored), it
        finishes and its events go out, but nothing is spoken.
        """
        scope, state = self.reply_scope, self.reply_state
        self._unpause()
        if state is None or state.interrupted or state.finished:
            return None
        state.interrupted = True  # the speaker's cut check: nothing of the reply after this
        if self.playback is not None:  # the client said what it played
            state.heard = "".join(self.playback.heard(state.spoken))
        elif self.paced:
            state.heard = state.playback.heard(clock.now(), self.play_until)
        else:
            state.heard = "".join(state.spoken)
        if scope is not None and not state.deciding:
            scope.cancel()
        self.play_until = 0.0  # the client drops what it had buffered
        self._announced = anyio.Event()  # whoever cut emits this `interrupted` at once
        return Interrupted(content=state.heard.strip())

    async def after_cut(self) -> None:
        """Wait until the last cut's ``interrupted`` is out (mostly not at all).

        The cut reply's own closing events (``assistant``, ``metrics``) come
        after it. Without the wait they could overtake it: the task that cut
        may still be waiting for room in the event stream when the reply's
        task, its last piece out, runs on (trio runs ready tasks in any order).
        """
        if self._announced is not None:
            await self._announced.wait()

    async def submit(self, text: str, endpoint_ms: float | None, wait_ms: float) -> None:
        assert self.turn_queue is not None
        # The last reply's hint was for this turn; until the next reply is decided
        # there is none (audio fed faster than real time can end another turn first).
        self.expecting = None
        turn = QueuedTurn(text, clock.now(), endpoint_ms=endpoint_ms, wait_ms=wait_ms)
        await self.turn_queue.send(turn)

    # -- the speaker's side ----------------------------------------------------

    async def unpaused(self, state: ReplyState) -> bool:
        """Wait while the reply is paused (mostly not at all); False if it was cut.

        The cut check matters: a cut wakes the paused reply and cancels its
        scope, but the woken step runs on to its next checkpoint, and an emit
        without one would go out after ``interrupted``.
        """
        while self._gate is not None:
            await self._gate.wait()
        return not state.interrupted and not self.failed

    def _unpause(self) -> None:
        self._resuming = False
        gate, self._gate = self._gate, None
        if gate is not None:
            gate.set()
