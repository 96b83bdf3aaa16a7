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
from typing import Protocol

from anyio.abc import TaskGroup

from voicepipe import clock
from voicepipe.audio import AudioFormat, Resampler
from voicepipe.channel import Receiver, Sender
from voicepipe.errors import ProviderError, Stage
from voicepipe.events import AssistantDelta, AudioChunk, ErrorEvent, Event
from voicepipe.providers.base import TTS
from voicepipe.streams import aclose, aiter_any, closing
from voicepipe.text import SentenceSplitter
from voicepipe.turns.playback import Playback, word_offsets

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
    audio: Receiver[bytes | ErrorEvent] | None  # synthesized ahead (None: the player does it)


class _Reading:
    """The reply text being read: the LLM's stream, cut into sentences as it comes."""

    __slots__ = ("ended", "pieces", "splitter", "stream")

    def __init__(self, stream: AsyncIterator[str] | None) -> None:
        self.stream = stream  # None: the text was whole from the start
        self.splitter = SentenceSplitter()
        self.pieces: list[str] = []  # complete, not yet spoken or queued
        self.ended = stream is None  # the stream is over (or failed): nothing more to read


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

    async def speak(self, text: str | AsyncIterable[str], state: ReplyState, tg: TaskGroup) -> None:
        """Speak ``text``; ``tg`` (the reply's task group) runs what goes on beside the player.

        The player reads the text itself until a sentence is complete: a reply
        that has come whole by then (a fixed line, a short answer) is spoken
        with no task beside it; the rest of a longer one is read on, and its
        next sentences synthesized ahead, in ``tg`` while the first goes out.
        """
        # Fixed text (a greeting, a form question) is not timed as LLM output.
        state.timed = not isinstance(text, str)
        tts = self.tts
        if tts is None:
            await self._speak_text(aiter_any([text]) if isinstance(text, str) else text, state)
            return
        if isinstance(text, str):  # all of it is here: its sentences at once
            reading = _Reading(None)
            state.produced.append(text)
            reading.pieces = reading.splitter.push(text)
            rest = reading.splitter.flush()
            if rest:
                reading.pieces.append(rest)
        else:
            stream = aiter(text)
            reading = _Reading(stream)
            try:
                await self._read(stream, reading, state)
            except BaseException:
                await aclose(stream)
                raise
            if reading.ended:
                await aclose(stream)  # (nothing to do for a generator run to its end)
        if not reading.pieces:
            return
        first = reading.pieces.pop(0)
        if reading.ended and not reading.pieces:
            await self._play_one(first, tts, state)
            return
        sentences: Receiver[_Sentence] = Receiver(1)
        tg.start_soon(self._produce, reading, tts, Sender(sentences), tg, state)
        with sentences:
            if await self._play_one(first, tts, state):
                await self._play(sentences, tts, state)

    async def _read(self, stream: AsyncIterator[str], reading: _Reading, state: ReplyState) -> None:
        """Read the reply text until a sentence is complete, or the text is over."""
        state.llm_started = clock.now() if state.timed else None
        splitter, pieces = reading.splitter, reading.pieces
        try:
            async for delta in stream:
                if state.first_token is None and state.timed:
                    state.first_token = clock.now()
                state.produced.append(delta)
                pieces += splitter.push(delta)
                if pieces:
                    return
        except ProviderError as exc:
            reading.ended = True
            await self.report(exc.stage, exc.message)
            return
        except Exception as exc:
            reading.ended = True
            await self.report("llm", f"{type(exc).__name__}: {exc}")
            return
        reading.ended = True
        rest = splitter.flush()
        if rest:
            pieces.append(rest)

    async def _say(self, text: str, state: ReplyState) -> bool:
        """Emit a piece of the reply as spoken, unless the reply was cut; False if cut."""
        if not await self.out.unpaused(state):
            return False
        state.spoken.append(text)
        await self.out.deliver(AssistantDelta(content=text))
        return True

    async def _speak_text(self, deltas: AsyncIterable[str], state: ReplyState) -> None:
        state.llm_started = clock.now() if state.timed else None
        async with closing(deltas) as stream:
            try:
                async for delta in stream:
                    if not delta:
                        continue
                    if state.first_token is None and state.timed:
                        state.first_token = clock.now()
                    state.produced.append(delta)
                    if not await self._say(delta, state):
                        return
            except ProviderError as exc:
                await self.report(exc.stage, exc.message)
            except Exception as exc:
                await self.report("llm", f"{type(exc).__name__}: {exc}")

    async def _produce(
        self,
        reading: _Reading,
        tts: TTS,
        sentences: Sender[_Sentence],
        tg: TaskGroup,
        state: ReplyState,
    ) -> None:
        """Queue the sentences after the first, reading the rest of the text, in order."""

        async def queue(piece: str) -> None:
            if not piece.strip() or sentences.receiving:
                # The player is waiting for this sentence, so it reads the TTS
                # itself: no task, no stream. One that comes while the player
                # is busy is synthesized ahead, beside it.
                await sentences.send(_Sentence(piece, None))
                return
            audio: Receiver[bytes | ErrorEvent] = Receiver(math.inf)
            await sentences.send(_Sentence(piece, audio))
            tg.start_soon(self._synthesize, tts, piece.strip(), Sender(audio), state)

        async with sentences:
            try:
                for piece in reading.pieces:
                    await queue(piece)
            except BaseException:  # (a cut while one waits for room: the stream is ours)
                if not reading.ended and reading.stream is not None:
                    await aclose(reading.stream)
                raise
            if reading.ended or reading.stream is None:
                return
            splitter = reading.splitter
            async with closing(reading.stream) as stream:
                try:
                    async for delta in stream:
                        if state.first_token is None and state.timed:
                            state.first_token = clock.now()
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
        started = clock.now()
        closed = False  # the reader closed this (a cut, the session's end): it reads no more
        try:
            async with closing(tts.synthesize(text)) as chunks:
                async for chunk in chunks:
                    if state.tts_ttfb is None:
                        state.tts_ttfb = round((clock.now() - started) * 1000, 3)
                    try:
                        yield chunk
                    except GeneratorExit:
                        closed = True
                        raise
        except Exception as exc:
            if closed or state.interrupted:
                # The stream failed as it was closed after a cut: nobody hears this
                # sentence any more (and a generator being closed must not yield).
                log.warning("TTS failed as its stream was closed: %s", exc)
                return
            if isinstance(exc, ProviderError):
                yield ErrorEvent(stage=exc.stage, message=exc.message)
            else:
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
            if sentence.audio is not None:
                with sentence.audio as audio:  # synthesized ahead: what is there, then as it comes
                    if not await self._play_sentence(sentence.text, audio, tts, state):
                        return
            elif not await self._play_one(sentence.text, tts, state):
                return

    async def _play_one(self, text: str, tts: TTS, state: ReplyState) -> bool:
        """Speak one sentence, reading its TTS here; False once the reply is cut."""
        if not text.strip():
            return await self._say(text, state)
        async with closing(self._chunks(tts, text.strip(), state)) as items:
            return await self._play_sentence(text, items, tts, state)

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
                if self.realtime_lead is not None:  # (what was heard is timed when paced)
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
            state.first_audio = clock.now()
        if self.realtime_lead is not None:
            while True:  # a pause during the wait moves playback on: wait again
                now = clock.now()
                out.play_until = max(out.play_until, now)
                wait = out.play_until - self.realtime_lead - now
                if wait <= 0:
                    break
                await clock.sleep(wait)
                if not await out.unpaused(state):  # the cut came while we waited
                    return False
            duration = fmt.duration(len(data))
            state.playback.played(duration)
            out.play_until += duration
        if state.interrupted:
            return False
        await self.out.emit(AudioChunk(audio=data, format=fmt))
        return True
