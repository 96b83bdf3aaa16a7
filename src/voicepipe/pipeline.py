"""One voice session: audio in, events out, providers and policy composed with anyio.

:class:`Pipeline` runs two loops in one task group (their shared state,
including pause, resume and cut, is :class:`~voicepipe.session.LiveSession`):

* **listen** feeds the caller's audio to the STT and turns what it reports
  into events; a finished user turn is queued for the respond loop.
* **respond** asks the policy what to say, cuts the reply text into sentences
  and speaks them through the TTS (the next sentence is synthesized while the
  previous one's audio is still going out). Each reply runs in its own cancel
  scope, so barge-in stops the LLM and TTS at once.

Everything a session starts is finished or cancelled before :meth:`Pipeline.run`
returns: leaving the ``async with`` early, an exception, or cancellation closes
every provider stream and leaves no task behind.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import uuid
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Callable,
    Coroutine,
    Iterable,
)
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import anyio
from anyio.abc import ObjectReceiveStream, TaskGroup

from voicepipe import clock
from voicepipe.audio import AudioFormat
from voicepipe.channel import Receiver, Sender
from voicepipe.errors import AudioFormatError, PolicyError, ProviderError, Stage
from voicepipe.events import (
    AssistantReply,
    ErrorEvent,
    Event,
    Finish,
    Metrics,
    Session,
    UserTurn,
)
from voicepipe.policies.base import Policy, PolicyContext, Reply
from voicepipe.policies.conversation import ConversationPolicy
from voicepipe.providers.base import LLM, STT, TTS, Usage, transcribe
from voicepipe.session import LiveSession, Playback, QueuedTurn
from voicepipe.speaking import ReplyState, Speaker
from voicepipe.streams import CLOSE_TIMEOUT, aclose, aiter_any, closing
from voicepipe.turns import BargeIn, LocalTurnDetector, TurnDetector, TurnTaking

__all__ = ["Pipeline", "Playback"]

log = logging.getLogger("voicepipe.pipeline")


class _Feeding:
    """``async with`` around a session's source of turns (the listen loop, typed turns).

    It closes the turn queue when the source ends, which lets the respond loop
    finish the turns in progress, after a fatal provider error is reported
    and the session's listening is cancelled. Not a wrapping coroutine: the
    listen loop's every chunk wakes up through each frame of its task's await
    chain, so the source is the task's coroutine (the listen loop calls
    :meth:`fail` and :meth:`close` itself: a ``with`` holds an object for as
    long as the session lives).
    """

    __slots__ = ("done", "pipeline", "scope", "session", "turns")

    def __init__(
        self,
        pipeline: Pipeline,
        session: LiveSession,
        turns: Sender[QueuedTurn],
        scope: anyio.CancelScope,
    ) -> None:
        self.pipeline = pipeline
        self.session = session
        self.turns = turns
        self.scope = scope
        self.done = False

    async def __aenter__(self) -> Sender[QueuedTurn]:
        return self.turns

    async def __aexit__(self, kind: object, exc: BaseException | None, tb: object) -> bool:
        try:
            if isinstance(exc, ProviderError):
                await self.fail(exc)
                return True
            return False
        finally:
            self.close()

    async def fail(self, exc: ProviderError) -> None:
        """The source failed for good: report it and stop the session."""
        await self.pipeline._fatal(self.session, exc.stage, exc.message)
        self.scope.cancel()

    def close(self) -> None:
        self.turns.close()
        self.done = True


_Source = Callable[[LiveSession, _Feeding, TaskGroup], Coroutine[Any, Any, None]]

_BARGE_IN = BargeIn()  # the default, shared (frozen): not two more objects per session


@functools.cache
def _default_detector() -> LocalTurnDetector:
    """The default end-of-turn detector, shared: it keeps no state between decisions."""
    return LocalTurnDetector()


class Pipeline:
    """A voice session composed of an STT, an LLM, a TTS and a policy.

    ``stt`` is needed for :meth:`run` (audio in), not for :meth:`run_text`;
    without ``tts`` replies are text only. ``output_format`` resamples the
    TTS audio. ``barge_in`` (default on, a :class:`~voicepipe.turns.BargeIn`
    to tune it, False for off) lets the caller's speech pause the reply and a
    real turn cut it; backchannels and noise resume it. ``turn_detector``
    (default :class:`~voicepipe.turns.LocalTurnDetector`, False for none)
    holds a turn that sounds unfinished a little longer. ``realtime_lead``
    (seconds) releases reply audio no faster than real time, at most that
    far ahead of playback, so that an interruption stops what the listener
    hears and history keeps what was heard; leave it ``None`` for tests and
    offline jobs. Audio chunks over ``max_chunk_bytes`` are
    rejected with an ``error`` event.
    """

    def __init__(
        self,
        *,
        llm: LLM,
        stt: STT | None = None,
        tts: TTS | None = None,
        policy: Policy | None = None,
        input_format: AudioFormat | None = None,
        output_format: AudioFormat | None = None,
        barge_in: bool | BargeIn = True,
        turn_detector: TurnDetector | bool = True,
        realtime_lead: float | None = None,
        max_chunk_bytes: int = 1 << 20,
        event_buffer: int = 64,
        session_id: str | None = None,
    ) -> None:
        self.llm = llm
        self.stt = stt
        self.tts = tts
        self.policy: Policy = policy if policy is not None else ConversationPolicy()
        self.input_format = input_format or AudioFormat()
        self.output_format = output_format or (tts.output_format if tts else None)
        self.barge_in: BargeIn | None = (
            barge_in if isinstance(barge_in, BargeIn) else _BARGE_IN if barge_in else None
        )
        self.turn_detector: TurnDetector | None = (
            _default_detector() if turn_detector is True else turn_detector or None
        )
        self.realtime_lead = realtime_lead
        self.max_chunk_bytes = max_chunk_bytes
        self.event_buffer = event_buffer
        self.session_id = session_id or uuid.uuid4().hex
        self.playback: Playback | None = None
        """Set by a transport whose client reports playback (see :class:`Playback`)."""
        self._live: tuple[LiveSession, Sender[QueuedTurn]] | None = None

    # -- public entry points -------------------------------------------------

    def run(
        self, audio: AsyncIterable[bytes]
    ) -> AbstractAsyncContextManager[ObjectReceiveStream[Event]]:
        """Run a session on ``audio`` (raw chunks in ``input_format``); yield its events."""
        if self.stt is None:
            raise ValueError("Pipeline.run() needs stt=...; use run_text() for typed turns")
        # _listen's coroutine itself: one frame fewer for each chunk's wake-up to cross.
        return self._run(functools.partial(self._listen, self.stt, audio))

    def run_text(
        self, turns: Iterable[str] | AsyncIterable[str]
    ) -> AbstractAsyncContextManager[ObjectReceiveStream[Event]]:
        """Run a session on typed user turns; each is answered before the next is read."""

        async def source(session: LiveSession, feeding: _Feeding, tg: TaskGroup) -> None:
            async with feeding as queue, closing(aiter_any(turns)) as texts:
                async for text in texts:
                    await queue.send(QueuedTurn(text, clock.now(), announce=True))

        return self._run(source, sequential=True)

    async def inject_turn(self, text: str) -> None:
        """Answer ``text`` as a whole user turn that did not come from the STT
        (keypad digits on a call); it interrupts a reply as a spoken turn does."""
        if self._live is None:
            raise RuntimeError("inject_turn() is for a running session")
        session, turns = self._live
        interrupted = session.cut() if self.barge_in else None
        if interrupted is not None:
            await session.emit(interrupted)
        with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
            await turns.send(QueuedTurn(text, clock.now(), announce=True))

    # -- session -------------------------------------------------------------

    @asynccontextmanager
    async def _run(
        self, source: _Source, *, sequential: bool = False
    ) -> AsyncIterator[ObjectReceiveStream[Event]]:
        receive: Receiver[Event] = Receiver(self.event_buffer)
        send = Sender(receive)
        session = LiveSession(send, paced=self.realtime_lead is not None, playback=self.playback)
        caller_error: Exception | None = None
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._main, session, source, sequential)
            try:
                yield receive
            except Exception as exc:
                # Re-raised below as itself, not wrapped in the task group's ExceptionGroup.
                caller_error = exc
            finally:
                receive.close()
                session.abandon()
                if not session.ended:  # (a cancel costs: anyio formats the task's repr)
                    tg.cancel_scope.cancel()
        if caller_error is not None:
            raise caller_error

    async def _main(self, session: LiveSession, source: _Source, sequential: bool) -> None:
        try:
            try:
                await self._session(session, source, sequential)
            finally:
                await self._close_policy()
            await session.emit(Finish(reason=session.finish_reason))  # (not if it left)
        finally:
            session.send.close()
            session.ended = True
            # The speaker and the session refer to each other: a cycle that would
            # keep the session, its pipeline and providers for the collector to find.
            session.speaker = None

    async def _session(self, session: LiveSession, source: _Source, sequential: bool) -> None:
        await session.emit(
            Session(
                session_id=self.session_id,
                input_format=self.input_format,
                output_format=self.output_format,
            )
        )
        buffer = 0 if sequential else 16
        turn_receive: Receiver[QueuedTurn] = Receiver(buffer)
        turn_send = Sender(turn_receive)
        self._live = (session, turn_send)
        try:
            async with anyio.create_task_group() as tg:
                # The session's scope: cancelled when the consumer has left, or the
                # STT failed for good (Finish still goes out, after it).
                session.scope = tg.cancel_scope
                if session.gone:
                    return
                feeding = _Feeding(self, session, turn_send, tg.cancel_scope)
                tg.start_soon(source, session, feeding, tg)
                await self._respond(session, turn_receive)
                if not feeding.done:  # the policy ended the session: stop listening
                    tg.cancel_scope.cancel()
        finally:
            session.scope = None
            turn_receive.close()

    async def _close_policy(self) -> None:
        """Call the policy's optional ``aclose`` hook: shielded, bounded, never raising."""
        close = getattr(self.policy, "aclose", None)
        if close is None:
            return
        with anyio.move_on_after(CLOSE_TIMEOUT, shield=True) as scope:
            try:
                await close()
            except Exception:
                log.exception("session %s: the policy's aclose() failed", self.session_id)
        if scope.cancelled_caught:
            log.warning(
                "session %s: the policy's aclose() took over %s s; abandoned",
                self.session_id,
                CLOSE_TIMEOUT,
            )

    async def _fatal(self, session: LiveSession, stage: Stage, message: str) -> None:
        log.warning("session %s ends: %s failed: %s", self.session_id, stage, message)
        session.finish_reason = "error"
        session.failed = True  # a reply going on (or starting) while this is sent says no more
        session.end_outlasting()
        interrupted = session.cut()  # the reply in progress stops: say so, like any cut
        if interrupted is not None:
            await session.emit(interrupted)
        await session.emit(ErrorEvent(stage=stage, message=message, recoverable=False))

    # -- listen --------------------------------------------------------------

    async def _listen(
        self,
        stt: STT,
        audio: AsyncIterable[bytes],
        session: LiveSession,
        feeding: _Feeding,
        tg: TaskGroup,
    ) -> None:
        session.turn_queue = feeding.turns
        try:
            taking = TurnTaking(
                session, task_group=tg, barge_in=self.barge_in, detector=self.turn_detector
            )
            chunks = self._checked(audio, session)
            try:
                try:
                    await transcribe(
                        stt, chunks, self.input_format, taking.on_event, session.expect
                    )
                finally:
                    taking.stop()
                await taking.settle()
            except ProviderError:
                raise
            except Exception as exc:
                log.exception("STT failed")
                raise ProviderError(
                    "stt", f"{type(exc).__name__}: {exc}", recoverable=False
                ) from exc
            finally:
                await aclose(chunks)
        except ProviderError as exc:
            await feeding.fail(exc)
        finally:
            feeding.close()

    async def _checked(
        self, audio: AsyncIterable[bytes], session: LiveSession
    ) -> AsyncIterator[bytes]:
        """The caller's audio, with malformed chunks reported and dropped."""
        frame = self.input_format.frame_size
        limit = self.max_chunk_bytes
        iterator = aiter(audio)
        try:
            async for chunk in iterator:
                # The common case inline (every chunk passes here): whole frames of bytes.
                if (
                    type(chunk) is bytes
                    and not (size := len(chunk)) % frame
                    and size <= limit
                    and not chunk.startswith(b"RIFF")
                ):
                    yield chunk
                    continue
                try:
                    data = self.input_format.check_chunk(chunk)  # (not bound for the session)
                    if len(data) > limit:
                        raise AudioFormatError(
                            f"audio chunk of {len(data)} bytes is over the {limit}-byte limit; "
                            "send chunks of 20-100 ms"
                        )
                except AudioFormatError as exc:
                    await session.emit(ErrorEvent(stage="input", message=str(exc)))
                    continue
                yield data
        finally:
            await aclose(iterator)

    # -- respond -------------------------------------------------------------

    async def _respond(self, session: LiveSession, turns: AsyncIterable[QueuedTurn]) -> None:
        if await self._reply(session, None):
            return
        async for turn in turns:
            if await self._reply(session, turn):
                return

    async def _reply(self, session: LiveSession, turn: QueuedTurn | None) -> bool:
        """Produce and speak one reply (the opening line when ``turn`` is None).

        True when the session ends with it (the policy said so, or failed for good).
        """
        if turn is not None:
            session.turns += 1
            if turn.announce:
                turn.ended_at = clock.now()
                await session.emit(UserTurn(content=turn.text))
        state = ReplyState(
            session.turns,
            turn.ended_at if turn else None,
            turn.endpoint_ms if turn else None,
            turn.wait_ms if turn else None,
        )
        ctx = PolicyContext(self.llm, Usage(), session.emit, outlast=session.outlast_cut)
        reply: Reply | None = None
        fatal: ProviderError | PolicyError | None = None
        session.reply_state = state
        try:
            state.deciding = True
            if turn is None:
                reply = await self.policy.start(ctx)
            else:
                ctx.alternatives = session.expect.alternatives(turn.text)
                reply = await self.policy.on_user_turn(turn.text, ctx)
            session.expecting = reply.expecting if reply is not None else None
            session.expect.hint = reply.hint() if reply is not None else None
            if reply is None:
                state.deciding = False
            else:
                # The reply's task group: its scope is what a cut cancels (the LLM
                # and TTS stop at once), and the policy's work beside the reply (a
                # tool call) runs in it. Entered once there is something to say.
                async with anyio.create_task_group() as tg:
                    session.reply_scope, ctx.task_group = tg.cancel_scope, tg
                    state.deciding = False
                    await self._say(session, reply, state, tg)
                session.reply_scope = None
            await session.unpaused(state)  # a pause at the very end ends in resume or cut
            state.finished = True
        except Exception as exc:
            fatal = await self._failed(session, exc)
        finally:
            session.reply_scope = session.reply_state = ctx.task_group = None
            session.outlasting = None  # what outlived a cut has ended with the reply
        interrupted = state.interrupted
        if interrupted:
            await session.after_cut()
        if state.heard is not None:
            spoken = state.heard
        elif session.playback is not None:
            spoken = "".join(session.playback.heard(state.spoken))
        else:
            spoken = "".join(state.spoken)
        produced = "".join(state.produced)
        if spoken.strip() or interrupted:
            # What the user heard, never more: a sentence the TTS failed on or
            # text after an LLM failure was produced but not spoken.
            await session.emit(AssistantReply(content=spoken.strip(), interrupted=interrupted))
        try:
            if reply is not None or interrupted:
                await self.policy.on_reply_done(produced, spoken=spoken, interrupted=interrupted)
        except Exception as exc:
            log.exception("policy failed")
            await self._error(session, "policy", f"{type(exc).__name__}: {exc}")
        if turn is not None:
            await session.emit(self._metrics(state, ctx.usage, ctx.tool_ms))
        if fatal is not None:
            await self._fatal(session, fatal.stage, fatal.message)
            return True
        if reply is not None and reply.end_session:
            if not session.failed:  # a fatal error meanwhile (the STT's) keeps its reason
                session.finish_reason = reply.finish_reason
            return True
        return False

    async def _say(
        self, session: LiveSession, reply: Reply, state: ReplyState, tg: TaskGroup
    ) -> None:
        """The decided reply's events, then its words (unless the caller has cut in)."""
        for event in reply.events:
            await session.emit(event)
        if not state.interrupted:
            await self._speaker(session).speak(reply.text, state, tg)
        if session.playback is not None and not state.interrupted:
            await session.playback.played(session.audio_bytes)

    async def _failed(
        self, session: LiveSession, exc: Exception
    ) -> ProviderError | PolicyError | None:
        """Report a reply's failure; the error itself if it ends the session."""
        while isinstance(exc, ExceptionGroup) and len(exc.exceptions) == 1:
            exc = exc.exceptions[0]  # what the reply's task group wrapped
        if isinstance(exc, ProviderError | PolicyError):
            if not exc.recoverable:
                return exc
            await self._error(session, exc.stage, exc.message)
            return None
        log.error("policy failed", exc_info=exc)
        await self._error(session, "policy", f"{type(exc).__name__}: {exc}")
        return None

    def _speaker(self, session: LiveSession) -> Speaker:
        """The session's speaker, made for its first spoken reply."""
        if session.speaker is None:
            session.speaker = Speaker(
                tts=self.tts,
                output_format=self.output_format,
                realtime_lead=self.realtime_lead,
                out=session,
                report=lambda stage, message: self._error(session, stage, message),
            )
        return session.speaker

    async def _error(self, session: LiveSession, stage: Stage, message: str) -> None:
        log.warning("session %s: %s failed: %s", self.session_id, stage, message)
        await session.emit(ErrorEvent(stage=stage, message=message, recoverable=True))

    def _metrics(self, state: ReplyState, usage: Usage, tool_ms: float | None) -> Metrics:
        def ms(start: float | None, end: float | None) -> float | None:
            return None if start is None or end is None else round((end - start) * 1000, 3)

        to_audio = ms(state.ended_at, state.first_audio)
        endpoint = state.endpoint_ms
        return Metrics(
            turn=state.number,
            end_of_speech_to_first_audio_ms=(
                round(endpoint + to_audio, 3)
                if endpoint is not None and to_audio is not None
                else None
            ),
            stt_endpoint_ms=endpoint,
            end_of_turn_to_first_token_ms=ms(state.ended_at, state.first_token),
            end_of_turn_to_first_audio_ms=to_audio,
            llm_ttft_ms=ms(state.llm_started, state.first_token),
            tts_ttfb_ms=state.tts_ttfb,
            end_of_turn_wait_ms=state.wait_ms,
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            tool_ms=tool_ms,
        )
