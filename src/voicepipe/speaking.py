"""Speaking one reply: text deltas to sentences, sentences to TTS audio, audio to events.

:class:`Speaker` cuts the reply text into sentences, synthesizes the next one
while the previous one's audio is still going out, and emits each sentence's
``assistant_delta`` just before its first ``audio``. It keeps the record the
pipeline reports from: what was produced and what was *spoken* (a sentence
counts as spoken once its first audio chunk is out; in text mode, each delta).

The pause gate and cut check: every emit of reply audio or text first waits
while the caller may be taking the floor (the reply is *paused*, see
:mod:`voicepipe.turns`), then looks at ``state.interrupted``. A barge-in
cancels the reply's scope, but a step that already holds a chunk (a paced
sleep that has just returned, a TTS chunk that has already arrived) runs on
to its next checkpoint; without the check it would emit after the
``interrupted`` event.
"""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import anyio
from anyio.abc import TaskGroup

from voicepipe.audio import AudioFormat, Resampler
from voicepipe.channel import Receiver, Sender
from voicepipe.errors import ProviderError, Stage
from voicepipe.events import AssistantDelta, AudioChunk, ErrorEvent, Event
from voicepipe.providers.base import TTS
from voicepipe.streams import aiter_any, closing
from voicepipe.text import SentenceSplitter
from voicepipe.turns.playback import Playback, word_offsets

if TYPE_CHECKING:
    from voicepipe.policies.base import PolicyContext

__all__ = ["Outlet", "ReplyState", "Speaker"]

log = logging.getLogger("voicepipe.pipeline")

Report = Callable[[Stage, str], Awaitable[None]]


class Outlet(Protocol):
    """Where a reply goes: the session's event stream and its playback clock."""

    play_until: float

    async def emit(self, event: Event) -> None: ...

    async def deliver(self, event: Event) -> None:
        """Emit a piece of the reply that a cut, once it is on its way, no longer stops."""
        ...

    async def unpaused(self, state: ReplyState) -> bool:
        """Wait while the reply is paused; False once it was cut."""
        ...


@dataclass(slots=True)
class ReplyState:
    """Bookkeeping of one reply: what was produced, what was spoken, when."""

    number: int
    ended_at: float | None
    endpoint_ms: float | None = None
    wait_ms: float | None = None  # the end-of-turn detector's hold
    deciding: bool = False  # the policy is working out the reply: barge-in waits for it
    finished: bool = False  # all of it is out: nothing left to pause or cut
    timed: bool = True  # the reply text comes from the LLM (not a fixed string)
    interrupted: bool = False
    produced: list[str] = field(default_factory=list)
    spoken: list[str] = field(default_factory=list)
    playback: Playback = field(default_factory=Playback)  # what was played when (paced)
    heard: str | None = None  # set at a cut: what the caller heard of the reply
    llm_started: float | None = None
    first_token: float | None = None
    first_audio: float | None = None
    tts_ttfb: float | None = None


@dataclass(slots=True)
class _Sentence:
    text: str
    audio: Receiver[bytes | ErrorEvent] | None  # synthesized ahead
    direct: bool = False  # the player synthesizes it itself (it was waiting for it)


class Speaker:
    """Speaks replies of one session through ``tts`` (or as text without one).

    ``realtime_lead`` (seconds) releases audio no faster than real time, at
    most that far ahead of playback; ``report`` sends a recoverable error.
    """

    def __init__(
        self,
        *,
        tts: TTS | None,
        output_format: AudioFormat | None,
        realtime_lead: float | None,
        out: Outlet,
        report: Report,
    ) -> None:
        self.tts = tts
        self.output_format = output_format
        self.realtime_lead = realtime_lead
        self.out = out
        self.report = report

    async def speak(
        self,
        text: str | AsyncIterable[str],
        state: ReplyState,
        ctx: PolicyContext | None = None,
    ) -> None:
        """Speak ``text``; ``ctx.task_group`` is lent the reply's task group meanwhile."""
        # Fixed text (a greeting, a form question) is not timed as LLM output.
        state.timed = not isinstance(text, str)
        deltas = aiter_any([text]) if isinstance(text, str) else text
        if self.tts is None:
            async with anyio.create_task_group() as tg:  # the policy's work (a tool call)
                if ctx is not None:
                    ctx.task_group = tg
                await self._speak_text(deltas, state)
            return
        sentences: Receiver[_Sentence] = Receiver(1)
        sentences_send = Sender(sentences)
        opened: list[_Sentence] = []  # closed below even if cancelled before being played
        try:
            async with anyio.create_task_group() as tg:
                if ctx is not None:
                    ctx.task_group = tg  # the policy's work beside the reply (a tool call)
                tg.start_soon(self._produce, deltas, self.tts, sentences_send, tg, state, opened)
                with sentences:
                    await self._play(sentences, self.tts, state)
        finally:
            if ctx is not None:
                ctx.task_group = None
            for sentence in opened:
                if sentence.audio is not None:
                    sentence.audio.close()

    async def _say(self, text: str, state: ReplyState) -> bool:
        """Emit a piece of the reply as spoken, unless the reply was cut; False if cut."""
        if not await self.out.unpaused(state):
            return False
        state.spoken.append(text)
        await self.out.deliver(AssistantDelta(content=text))
        return True

    async def _speak_text(self, deltas: AsyncIterable[str], state: ReplyState) -> None:
        state.llm_started = anyio.current_time() if state.timed else None
        async with closing(deltas) as stream:
            try:
                async for delta in stream:
                    if not delta:
                        continue
                    if state.first_token is None and state.timed:
                        state.first_token = anyio.current_time()
                    state.produced.append(delta)
                    if not await self._say(delta, state):
                        return
            except ProviderError as exc:
                await self.report(exc.stage, exc.message)
            except Exception as exc:
                await self.report("llm", f"{type(exc).__name__}: {exc}")

    async def _produce(
        self,
        deltas: AsyncIterable[str],
        tts: TTS,
        sentences: Sender[_Sentence],
        tg: TaskGroup,
        state: ReplyState,
        opened: list[_Sentence],
    ) -> None:
        """Read the reply text, cut it into sentences, start TTS on each in order."""
        splitter = SentenceSplitter()

        async def queue(piece: str) -> None:
            if not piece.strip():
                await sentences.send(_Sentence(piece, None))
                return
            if sentences.receiving:
                # The player is waiting for this sentence, so it reads the TTS
                # itself: no task, no stream. One that comes while the player
                # is busy is synthesized ahead, beside it.
                await sentences.send(_Sentence(piece, None, direct=True))
                return
            audio_receive: Receiver[bytes | ErrorEvent] = Receiver(math.inf)
            audio_send = Sender(audio_receive)
            sentence = _Sentence(piece, audio_receive)
            opened.append(sentence)
            try:
                await sentences.send(sentence)
            except BaseException:
                audio_send.close()
                raise
            tg.start_soon(self._synthesize, tts, piece.strip(), audio_send, state)

        async with sentences:
            state.llm_started = anyio.current_time() if state.timed else None
            async with closing(deltas) as stream:
                try:
                    async for delta in stream:
                        if state.first_token is None and state.timed:
                            state.first_token = anyio.current_time()
                        state.produced.append(delta)
                        for piece in splitter.push(delta):
                            await queue(piece)
                except ProviderError as exc:
                    await self.report(exc.stage, exc.message)
                    return
                except Exception as exc:
                    await self.report("llm", f"{type(exc).__name__}: {exc}")
                    return
            rest = splitter.flush()
            if rest:
                await queue(rest)

    async def _chunks(
        self, tts: TTS, text: str, state: ReplyState
    ) -> AsyncIterator[bytes | ErrorEvent]:
        """``text``'s audio from the TTS; a failure is an ``ErrorEvent`` in its place."""
        started = anyio.current_time()
        try:
            async with closing(tts.synthesize(text)) as chunks:
                async for chunk in chunks:
                    if state.tts_ttfb is None:
                        state.tts_ttfb = round((anyio.current_time() - started) * 1000, 3)
                    yield chunk
        except ProviderError as exc:
            yield ErrorEvent(stage=exc.stage, message=exc.message)
        except Exception as exc:
            log.exception("TTS failed")
            yield ErrorEvent(stage="tts", message=f"{type(exc).__name__}: {exc}")

    async def _synthesize(
        self,
        tts: TTS,
        text: str,
        audio: Sender[bytes | ErrorEvent],
        state: ReplyState,
    ) -> None:
        """Synthesize a sentence ahead, while the one before it is still going out."""
        async with audio, closing(self._chunks(tts, text, state)) as items:
            async for item in items:
                await audio.send(item)

    async def _play(self, sentences: Receiver[_Sentence], tts: TTS, state: ReplyState) -> None:
        """Emit each sentence's audio in order, its text just before its first chunk."""
        async for sentence in sentences:
            if sentence.direct:
                async with closing(self._chunks(tts, sentence.text.strip(), state)) as items:
                    if not await self._play_sentence(sentence.text, items, tts, state):
                        return
            elif sentence.audio is not None:
                with sentence.audio as audio:  # synthesized ahead: what is there, then as it comes
                    if not await self._play_sentence(sentence.text, audio, tts, state):
                        return
            elif not await self._say(sentence.text, state):
                return

    async def _play_sentence(
        self,
        text: str,
        items: AsyncIterator[bytes | ErrorEvent],
        tts: TTS,
        state: ReplyState,
    ) -> bool:
        """Emit one sentence's audio (and its text before it); False once the reply is cut."""
        source = tts.output_format
        target = self.output_format or source
        frame = source.frame_size
        resampler = Resampler(source, target) if source != target else None
        carry = b""
        started = False
        async for item in items:
            if isinstance(item, ErrorEvent):
                await self.out.emit(item)
                continue
            data = carry + item if carry else item
            cut = len(data) - len(data) % frame
            if cut < len(data):
                data, carry = data[:cut], data[cut:]
            else:
                carry = b""
            if resampler is not None:
                data = resampler.process(data)
            if not data:
                continue
            if not started:
                started = True
                if not await self._say(text, state):
                    return False
                state.playback.sentence(text, word_offsets(tts, text))
            if not await self._emit_audio(data, target, state):
                return False
        if resampler is not None and started:
            tail = resampler.flush()
            if tail and not await self._emit_audio(tail, target, state):
                return False
        return True

    async def _emit_audio(self, data: bytes, fmt: AudioFormat, state: ReplyState) -> bool:
        """Emit one chunk of reply audio, paced if asked; False if the reply was cut."""
        out = self.out
        if not await out.unpaused(state):
            return False
        if state.first_audio is None:
            state.first_audio = anyio.current_time()
        if self.realtime_lead is not None:
            while True:  # a pause during the wait moves playback on: wait again
                now = anyio.current_time()
                out.play_until = max(out.play_until, now)
                wait = out.play_until - self.realtime_lead - now
                if wait <= 0:
                    break
                await anyio.sleep(wait)
                if not await out.unpaused(state):  # the cut came while we waited
                    return False
            duration = fmt.duration(len(data))
            state.playback.played(duration)
            out.play_until += duration
        if state.interrupted:
            return False
        await self.out.emit(AudioChunk(audio=data, format=fmt))
        return True
