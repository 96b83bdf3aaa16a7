"""One voice session: audio in, events out, providers and policy composed with anyio.

:class:`Pipeline` runs two loops in one task group:

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

import logging
import math
import time
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TypeVar

import anyio
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from voicepipe.audio import AudioFormat, Resampler
from voicepipe.errors import AudioFormatError, ProviderError, Stage
from voicepipe.events import (
    AssistantDelta,
    AssistantReply,
    AudioChunk,
    ErrorEvent,
    Event,
    Finish,
    Interrupted,
    Metrics,
    Session,
    SpeechStarted,
    UserTurn,
)
from voicepipe.policies.base import Policy, PolicyContext, Reply
from voicepipe.policies.conversation import ConversationPolicy
from voicepipe.providers.base import LLM, STT, TTS, STTEvent, Usage
from voicepipe.text import SentenceSplitter

__all__ = ["Pipeline"]

log = logging.getLogger("voicepipe.pipeline")

T = TypeVar("T")

CLOSE_TIMEOUT = 2.0
"""Seconds a provider stream gets to close cleanly after a cancellation."""


@asynccontextmanager
async def _closing(iterable: AsyncIterable[T]) -> AsyncIterator[AsyncIterator[T]]:
    """Iterate ``iterable`` and close it on exit, even when cancelled.

    The close is shielded (for at most ``CLOSE_TIMEOUT``) so a provider can
    release its HTTP stream or socket cleanly on barge-in.
    """
    iterator = aiter(iterable)
    try:
        yield iterator
    finally:
        close = getattr(iterator, "aclose", None)
        if close is not None:
            with anyio.move_on_after(CLOSE_TIMEOUT, shield=True):
                await close()


async def _put(stream: MemoryObjectSendStream[T], item: T) -> None:
    """Send ``item``, without a trip through the event loop when there is room.

    anyio's ``send`` always yields to the loop first; on the hot paths (every
    event, every audio chunk) that trip costs more than the work itself.
    A full buffer still blocks, so back-pressure is kept.
    """
    try:
        stream.send_nowait(item)
    except anyio.WouldBlock:
        await stream.send(item)


@dataclass(slots=True)
class _Turn:
    text: str
    ended_at: float
    announce: bool = False  # emit the user_turn event when the reply starts (text mode)
    endpoint_ms: float | None = None  # the STT's wait after the last word


@dataclass(slots=True)
class _Sentence:
    text: str
    audio: MemoryObjectReceiveStream[bytes | ErrorEvent] | None


@dataclass(slots=True)
class _TurnState:
    """Bookkeeping of one reply: what was produced, what was spoken, when."""

    number: int
    ended_at: float | None
    endpoint_ms: float | None = None
    deciding: bool = False  # the policy is working out the reply: barge-in waits for it
    timed: bool = True  # the reply text comes from the LLM (not a fixed string)
    interrupted: bool = False
    produced: list[str] = field(default_factory=list)
    spoken: list[str] = field(default_factory=list)
    llm_started: float | None = None
    first_token: float | None = None
    first_audio: float | None = None
    tts_ttfb: float | None = None


class _Session:
    """Per-run state shared by the listen and respond loops."""

    def __init__(self, send: MemoryObjectSendStream[Event]) -> None:
        self.send = send
        self.reply_scope: anyio.CancelScope | None = None
        self.reply_state: _TurnState | None = None
        self.finish_reason = "end_of_input"
        self.turns = 0
        self.play_until = 0.0

    async def emit(self, event: Event) -> None:
        await _put(self.send, event)

    def interrupt(self) -> Interrupted | None:
        """Stop the reply in progress, if any, and say what of it was spoken.

        Barge-in stops speech, never a decision: while the policy is still
        working out the reply (a form answer being judged and stored), it
        finishes and its events go out, but nothing is spoken.
        """
        scope, state = self.reply_scope, self.reply_state
        if scope is None or state is None or state.interrupted:
            return None
        state.interrupted = True
        if not state.deciding:
            scope.cancel()
        self.play_until = 0.0  # the client drops what it had buffered
        return Interrupted(content="".join(state.spoken).strip())


_Source = Callable[[_Session, MemoryObjectSendStream[_Turn]], Awaitable[None]]


class Pipeline:
    """A voice session composed of an STT, an LLM, a TTS and a policy.

    ``stt`` is needed for :meth:`run` (audio in), not for :meth:`run_text`;
    without ``tts`` replies are text only. ``output_format`` resamples the
    TTS audio. With ``barge_in`` the user speaking cancels the reply in
    progress. ``realtime_lead`` (seconds) releases reply audio no faster than
    real time, at most that far ahead of playback, so that an interruption
    stops what the listener hears and history matches it; leave it ``None``
    for tests and offline jobs. Audio chunks over ``max_chunk_bytes`` are
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
        barge_in: bool = True,
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
        self.barge_in = barge_in
        self.realtime_lead = realtime_lead
        self.max_chunk_bytes = max_chunk_bytes
        self.event_buffer = event_buffer
        self.session_id = session_id or uuid.uuid4().hex

    # -- public entry points -------------------------------------------------

    @asynccontextmanager
    async def run(
        self, audio: AsyncIterable[bytes]
    ) -> AsyncIterator[MemoryObjectReceiveStream[Event]]:
        """Run a session on ``audio`` (raw chunks in ``input_format``); yield its events."""
        if self.stt is None:
            raise ValueError("Pipeline.run() needs stt=...; use run_text() for typed turns")
        stt = self.stt

        async def source(session: _Session, turns: MemoryObjectSendStream[_Turn]) -> None:
            await self._listen(stt, audio, session, turns)

        async with self._run(source) as events:
            yield events

    @asynccontextmanager
    async def run_text(
        self, turns: Iterable[str] | AsyncIterable[str]
    ) -> AsyncIterator[MemoryObjectReceiveStream[Event]]:
        """Run a session on typed user turns; each is answered before the next is read."""

        async def source(session: _Session, queue: MemoryObjectSendStream[_Turn]) -> None:
            async with _closing(_aiter(turns)) as texts:
                async for text in texts:
                    await queue.send(_Turn(text, time.perf_counter(), announce=True))

        async with self._run(source, sequential=True) as events:
            yield events

    # -- session -------------------------------------------------------------

    @asynccontextmanager
    async def _run(
        self, source: _Source, *, sequential: bool = False
    ) -> AsyncIterator[MemoryObjectReceiveStream[Event]]:
        send, receive = anyio.create_memory_object_stream[Event](self.event_buffer)
        caller_error: Exception | None = None
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._main, source, send, sequential)
            try:
                with receive:
                    yield receive
            except Exception as exc:
                # Re-raised below as itself, not wrapped in the task group's ExceptionGroup.
                caller_error = exc
            finally:
                tg.cancel_scope.cancel()
        if caller_error is not None:
            raise caller_error

    async def _main(
        self, source: _Source, send: MemoryObjectSendStream[Event], sequential: bool
    ) -> None:
        session = _Session(send)
        async with send:
            await session.emit(
                Session(
                    session_id=self.session_id,
                    input_format=self.input_format,
                    output_format=self.output_format,
                )
            )
            buffer = 0 if sequential else 16
            turn_send, turn_receive = anyio.create_memory_object_stream[_Turn](buffer)
            with turn_receive, anyio.CancelScope() as session_scope:
                async with anyio.create_task_group() as tg:

                    async def feed() -> None:
                        # Closing turn_send (end of input) lets the respond loop
                        # finish the turns in progress, after any fatal error is out.
                        with turn_send:
                            try:
                                await source(session, turn_send)
                            except ProviderError as exc:
                                await self._fatal(session, exc.stage, exc.message)
                                session_scope.cancel()

                    tg.start_soon(feed)
                    await self._respond(session, turn_receive)
                    tg.cancel_scope.cancel()
            await session.emit(Finish(reason=session.finish_reason))

    async def _fatal(self, session: _Session, stage: Stage, message: str) -> None:
        log.warning("session %s ends: %s failed: %s", self.session_id, stage, message)
        session.finish_reason = "error"
        session.interrupt()
        await session.emit(ErrorEvent(stage=stage, message=message, recoverable=False))

    # -- listen --------------------------------------------------------------

    async def _listen(
        self,
        stt: STT,
        audio: AsyncIterable[bytes],
        session: _Session,
        turns: MemoryObjectSendStream[_Turn],
    ) -> None:
        async def barge_in() -> None:
            interrupted = session.interrupt() if self.barge_in else None
            if interrupted is not None:
                await session.emit(interrupted)

        async def on_event(event: STTEvent) -> None:
            if isinstance(event, UserTurn):
                if not event.content.strip():
                    return
                await barge_in()  # a new turn supersedes the reply in progress
                await session.emit(event)
                turn = _Turn(event.content, time.perf_counter(), endpoint_ms=event.endpoint_ms)
                await _put(turns, turn)
                return
            await session.emit(event)
            if isinstance(event, SpeechStarted):
                await barge_in()

        async with _closing(self._checked(audio, session)) as chunks:
            try:
                await stt.transcribe(chunks, self.input_format, on_event)
            except ProviderError:
                raise
            except Exception as exc:
                log.exception("STT failed")
                raise ProviderError(
                    "stt", f"{type(exc).__name__}: {exc}", recoverable=False
                ) from exc

    async def _checked(
        self, audio: AsyncIterable[bytes], session: _Session
    ) -> AsyncIterator[bytes]:
        """The caller's audio, with malformed chunks reported and dropped."""
        check = self.input_format.check_chunk
        limit = self.max_chunk_bytes
        async with _closing(audio) as iterator:
            async for chunk in iterator:
                try:
                    data = check(chunk)
                    if len(data) > limit:
                        raise AudioFormatError(
                            f"audio chunk of {len(data)} bytes is over the {limit}-byte limit; "
                            "send chunks of 20-100 ms"
                        )
                except AudioFormatError as exc:
                    await session.emit(ErrorEvent(stage="input", message=str(exc)))
                    continue
                yield data

    # -- respond -------------------------------------------------------------

    async def _respond(self, session: _Session, turns: AsyncIterable[_Turn]) -> None:
        reply = await self._reply(session, None)
        if reply is not None and reply.end_session:
            session.finish_reason = reply.finish_reason
            return
        async for turn in turns:
            reply = await self._reply(session, turn)
            if reply is not None and reply.end_session:
                session.finish_reason = reply.finish_reason
                return

    async def _reply(self, session: _Session, turn: _Turn | None) -> Reply | None:
        """Produce and speak one reply (the opening line when ``turn`` is None)."""
        if turn is not None:
            session.turns += 1
            if turn.announce:
                turn.ended_at = time.perf_counter()
                await session.emit(UserTurn(content=turn.text))
        state = _TurnState(
            session.turns, turn.ended_at if turn else None, turn.endpoint_ms if turn else None
        )
        ctx = PolicyContext(self.llm, Usage(), session.emit)
        reply: Reply | None = None
        with anyio.CancelScope() as scope:
            session.reply_scope, session.reply_state = scope, state
            try:
                state.deciding = True
                if turn is None:
                    reply = await self.policy.start(ctx)
                else:
                    reply = await self.policy.on_user_turn(turn.text, ctx)
                state.deciding = False
                if reply is not None:
                    for event in reply.events:
                        await session.emit(event)
                    if not state.interrupted:
                        await self._speak(reply.text, session, state)
            except ProviderError as exc:
                await self._error(session, exc.stage, exc.message)
            except Exception as exc:
                log.exception("policy failed")
                await self._error(session, "policy", f"{type(exc).__name__}: {exc}")
            finally:
                session.reply_scope = session.reply_state = None
        interrupted = state.interrupted
        spoken = "".join(state.spoken)
        produced = "".join(state.produced)
        if produced.strip() or interrupted:
            content = spoken if interrupted else produced
            await session.emit(AssistantReply(content=content.strip(), interrupted=interrupted))
        try:
            if reply is not None or interrupted:
                await self.policy.on_reply_done(produced, spoken=spoken, interrupted=interrupted)
        except Exception as exc:
            log.exception("policy failed")
            await self._error(session, "policy", f"{type(exc).__name__}: {exc}")
        if turn is not None:
            await session.emit(self._metrics(state, ctx.usage))
        return reply

    async def _error(self, session: _Session, stage: Stage, message: str) -> None:
        log.warning("session %s: %s failed: %s", self.session_id, stage, message)
        await session.emit(ErrorEvent(stage=stage, message=message, recoverable=True))

    def _metrics(self, state: _TurnState, usage: Usage) -> Metrics:
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
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
        )

    # -- speak ---------------------------------------------------------------

    async def _speak(
        self, text: str | AsyncIterable[str], session: _Session, state: _TurnState
    ) -> None:
        # Fixed text (a greeting, a form question) is not timed as LLM output.
        timed = not isinstance(text, str)
        deltas = _aiter([text]) if isinstance(text, str) else text
        state.timed = timed
        if self.tts is None:
            await self._speak_text(deltas, session, state)
            return
        sentences_send, sentences = anyio.create_memory_object_stream[_Sentence](1)
        opened: list[_Sentence] = []  # closed below even if cancelled before being played
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(
                    self._produce, deltas, self.tts, sentences_send, tg, session, state, opened
                )
                with sentences:
                    await self._play(sentences, self.tts, session, state)
        finally:
            for sentence in opened:
                if sentence.audio is not None:
                    sentence.audio.close()

    async def _speak_text(
        self, deltas: AsyncIterable[str], session: _Session, state: _TurnState
    ) -> None:
        state.llm_started = time.perf_counter() if state.timed else None
        async with _closing(aiter(deltas)) as stream:
            try:
                async for delta in stream:
                    if not delta:
                        continue
                    if state.first_token is None and state.timed:
                        state.first_token = time.perf_counter()
                    state.produced.append(delta)
                    state.spoken.append(delta)
                    await session.emit(AssistantDelta(content=delta))
            except ProviderError as exc:
                await self._error(session, exc.stage, exc.message)
            except Exception as exc:
                await self._error(session, "llm", f"{type(exc).__name__}: {exc}")

    async def _produce(
        self,
        deltas: AsyncIterable[str],
        tts: TTS,
        sentences: MemoryObjectSendStream[_Sentence],
        tg: TaskGroup,
        session: _Session,
        state: _TurnState,
        opened: list[_Sentence],
    ) -> None:
        """Read the reply text, cut it into sentences, start TTS on each in order."""
        splitter = SentenceSplitter()

        async def queue(piece: str) -> None:
            if not piece.strip():
                await _put(sentences, _Sentence(piece, None))
                return
            audio_send, audio_receive = anyio.create_memory_object_stream[bytes | ErrorEvent](
                math.inf
            )
            sentence = _Sentence(piece, audio_receive)
            opened.append(sentence)
            try:
                await _put(sentences, sentence)
            except BaseException:
                audio_send.close()
                raise
            tg.start_soon(self._synthesize, tts, piece.strip(), audio_send, state)

        async with sentences:
            state.llm_started = time.perf_counter() if state.timed else None
            async with _closing(aiter(deltas)) as stream:
                try:
                    async for delta in stream:
                        if state.first_token is None and state.timed:
                            state.first_token = time.perf_counter()
                        state.produced.append(delta)
                        for piece in splitter.push(delta):
                            await queue(piece)
                except ProviderError as exc:
                    await self._error(session, exc.stage, exc.message)
                    return
                except Exception as exc:
                    await self._error(session, "llm", f"{type(exc).__name__}: {exc}")
                    return
            rest = splitter.flush()
            if rest:
                await queue(rest)

    async def _synthesize(
        self,
        tts: TTS,
        text: str,
        audio: MemoryObjectSendStream[bytes | ErrorEvent],
        state: _TurnState,
    ) -> None:
        started = time.perf_counter()
        async with audio:
            try:
                async with _closing(tts.synthesize(text)) as chunks:
                    async for chunk in chunks:
                        if state.tts_ttfb is None:
                            state.tts_ttfb = round((time.perf_counter() - started) * 1000, 3)
                        await _put(audio, chunk)
            except ProviderError as exc:
                await _put(audio, ErrorEvent(stage=exc.stage, message=exc.message))
            except Exception as exc:
                log.exception("TTS failed")
                await _put(audio, ErrorEvent(stage="tts", message=f"{type(exc).__name__}: {exc}"))

    async def _play(
        self,
        sentences: AsyncIterable[_Sentence],
        tts: TTS,
        session: _Session,
        state: _TurnState,
    ) -> None:
        """Emit each sentence's audio in order, its text just before its first chunk."""
        source = tts.output_format
        target = self.output_format or source
        frame = source.frame_size
        async for sentence in sentences:
            if sentence.audio is None:
                state.spoken.append(sentence.text)
                await session.emit(AssistantDelta(content=sentence.text))
                continue
            resampler = Resampler(source, target) if source != target else None
            carry = b""
            started = False
            with sentence.audio:
                async for item in sentence.audio:
                    if isinstance(item, ErrorEvent):
                        await session.emit(item)
                        continue
                    data = carry + item
                    cut = len(data) - len(data) % frame
                    data, carry = data[:cut], data[cut:]
                    if resampler is not None:
                        data = resampler.process(data)
                    if not data:
                        continue
                    if not started:
                        started = True
                        state.spoken.append(sentence.text)
                        await session.emit(AssistantDelta(content=sentence.text))
                    await self._emit_audio(data, target, session, state)
            if resampler is not None and started:
                tail = resampler.flush()
                if tail:
                    await self._emit_audio(tail, target, session, state)

    async def _emit_audio(
        self, data: bytes, fmt: AudioFormat, session: _Session, state: _TurnState
    ) -> None:
        if state.first_audio is None:
            state.first_audio = time.perf_counter()
        if self.realtime_lead is not None:
            now = time.perf_counter()
            session.play_until = max(session.play_until, now)
            wait = session.play_until - self.realtime_lead - now
            if wait > 0:
                await anyio.sleep(wait)
            session.play_until += fmt.duration(len(data))
        await session.emit(AudioChunk(audio=data, format=fmt))


async def _aiter(items: Iterable[str] | AsyncIterable[str]) -> AsyncIterator[str]:
    if isinstance(items, AsyncIterable):
        async for item in items:
            yield item
    else:
        for item in items:
            yield item
