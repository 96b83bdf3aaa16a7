"""Deterministic fake providers for testing voice apps without a network or a model.

They implement the real protocols, are driven by what you script, and record
what they received and whether every stream they opened was closed, so a test
can assert on both::

    stt = FakeSTT(["what's the weather", "bye"])
    llm = FakeLLM(["Sunny and warm."])
    tts = FakeTTS()
    ...
    assert llm.open_streams == 0 and tts.open_streams == 0
"""

from __future__ import annotations

import functools
import math
import re
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator, Sequence
from typing import TypeVar

import anyio
from pydantic import BaseModel, ValidationError

from voicepipe.audio import AudioFormat
from voicepipe.errors import ProviderError
from voicepipe.events import SpeechStarted, TranscriptFinal, TranscriptInterim, UserTurn
from voicepipe.providers.base import Emit, Message, Usage

__all__ = ["FakeLLM", "FakeSTT", "FakeTTS"]

M = TypeVar("M", bound=BaseModel)
_TOKEN = re.compile(r"\s*\S+\s*$|\s*\S+")


class FakeSTT:
    """Audio-driven scripted speech-to-text.

    Audio is cut into 20 ms windows; a window whose RMS is at least
    ``threshold`` (500 by default) is speech. The first speech window of a turn
    emits ``speech_started``; every ``interim_ms`` of speech emits a longer
    prefix of the next scripted turn as ``transcript_interim``; ``silence_ms``
    of non-speech after speech emits ``transcript_final`` and ``user_turn``
    with the next string of ``turns``. Input that ends mid-speech finishes the
    turn too. Speech beyond the script is counted in :attr:`unscripted_turns`.
    """

    window_ms = 20

    def __init__(
        self,
        turns: Iterable[str] = (),
        *,
        silence_ms: int = 300,
        threshold: float = 500.0,
        interim_ms: int = 100,
    ) -> None:
        self._turns: Iterator[str] = iter(turns)  # may be endless: itertools.repeat("hi")
        self.silence_ms = silence_ms
        self.threshold = threshold
        self.interim_ms = interim_ms
        self.received_bytes = 0
        self.sessions = 0
        self.open_sessions = 0
        self.unscripted_turns = 0

    @property
    def closed(self) -> bool:
        """True when no transcription is running (every session was closed)."""
        return self.open_sessions == 0

    async def transcribe(
        self, audio: AsyncIterable[bytes], format: AudioFormat, emit: Emit
    ) -> None:
        self.sessions += 1
        self.open_sessions += 1
        try:
            await self._transcribe(audio, format, emit)
        finally:
            self.open_sessions -= 1

    async def _transcribe(
        self, audio: AsyncIterable[bytes], format: AudioFormat, emit: Emit
    ) -> None:
        window = format.bytes_for(self.window_ms)
        silence_windows = math.ceil(self.silence_ms / self.window_ms)
        interim_windows = max(1, self.interim_ms // self.window_ms)
        pending = b""
        speech = 0  # speech windows in the current turn (0: not in a turn)
        silence = 0
        words: list[str] = []
        shown = 0

        async def end_turn() -> None:
            nonlocal speech, silence, shown
            waited = silence * self.window_ms
            speech = silence = shown = 0
            if words:
                text = " ".join(words)
                await emit(TranscriptFinal(content=text))
                await emit(UserTurn(content=text, endpoint_ms=waited))

        async for chunk in audio:
            self.received_bytes += len(chunk)
            pending = pending + chunk if pending else chunk
            whole = len(pending) - len(pending) % window
            if not whole:
                continue
            loud = _loud_windows(pending[:whole], window, self.threshold)
            pending = pending[whole:]
            for is_speech in loud:
                if is_speech:
                    if speech == 0:
                        words = self._next_turn()
                        await emit(SpeechStarted())
                    speech += 1
                    silence = 0
                    count = min(len(words), speech // interim_windows)
                    if speech % interim_windows == 0 and count > shown:
                        shown = count
                        await emit(TranscriptInterim(content=" ".join(words[:count])))
                elif speech:
                    silence += 1
                    if silence >= silence_windows:
                        await end_turn()
        if speech:
            await end_turn()

    def _next_turn(self) -> list[str]:
        turn = next(self._turns, None)
        if turn is None:
            self.unscripted_turns += 1
            return []
        return turn.split()


class FakeLLM:
    """Scripted chat model.

    ``replies`` is a list used in order (an ``Exception`` in it is raised
    instead of replying), or a callable from the message list to the reply;
    by default the last user message is echoed. Replies stream word by word:
    the first token after ``ttft`` seconds, then one every ``token_delay``.
    ``complete_json`` parses the next reply as JSON into the schema.
    """

    def __init__(
        self,
        replies: Sequence[str | Exception] | Callable[[Sequence[Message]], str] | None = None,
        *,
        ttft: float = 0.0,
        token_delay: float = 0.0,
    ) -> None:
        self._script: deque[str | Exception] | None = None
        self._reply_fn: Callable[[Sequence[Message]], str] | None = None
        if callable(replies):
            self._reply_fn = replies
        elif replies is not None:
            self._script = deque(replies)
        self.ttft = ttft
        self.token_delay = token_delay
        self.calls: list[list[Message]] = []
        self.json_calls: list[list[Message]] = []
        self.open_streams = 0
        self.closed_streams = 0
        self.completed_streams = 0

    def _reply(self, messages: Sequence[Message]) -> str:
        if self._reply_fn is not None:
            return self._reply_fn(messages)
        if self._script is None:
            users = [m.content for m in messages if m.role == "user"]
            return users[-1] if users else ""
        if not self._script:
            raise ProviderError(
                "llm", f"FakeLLM has no scripted reply left for call {self.n_calls}"
            )
        reply = self._script.popleft()
        if isinstance(reply, Exception):
            raise reply
        return reply

    @property
    def n_calls(self) -> int:
        return len(self.calls) + len(self.json_calls)

    async def stream(
        self, messages: Sequence[Message], *, usage: Usage | None = None
    ) -> AsyncIterator[str]:
        self.calls.append(list(messages))
        self.open_streams += 1
        try:
            await anyio.sleep(self.ttft)
            tokens = _TOKEN.findall(self._reply(messages))
            for index, token in enumerate(tokens):
                if index:
                    await anyio.sleep(self.token_delay)
                yield token
            if usage is not None:
                usage.prompt_tokens = sum(len(m.content.split()) for m in messages)
                usage.completion_tokens = len(tokens)
            self.completed_streams += 1
        finally:
            self.open_streams -= 1
            self.closed_streams += 1

    async def complete_json(
        self, messages: Sequence[Message], schema: type[M], *, usage: Usage | None = None
    ) -> M:
        self.json_calls.append(list(messages))
        await anyio.sleep(self.ttft)
        text = self._reply(messages)
        try:
            return schema.model_validate_json(text)
        except ValidationError as exc:
            raise ProviderError(
                "llm", f"reply is not a valid {schema.__name__}: {exc.errors()[0]['msg']}"
            ) from exc


class FakeTTS:
    """Deterministic speech: a 200 Hz tone lasting ``ms_per_char`` per character.

    The first chunk comes after ``ttfb`` seconds, then one ``chunk_ms`` chunk
    every ``chunk_delay`` seconds. A text in ``fail_on`` raises ProviderError.
    """

    def __init__(
        self,
        *,
        ttfb: float = 0.0,
        sample_rate: int = 24000,
        ms_per_char: float = 50.0,
        chunk_ms: int = 100,
        chunk_delay: float = 0.0,
        fail_on: Iterable[str] = (),
    ) -> None:
        self._format = AudioFormat(sample_rate, 1)
        self.ttfb = ttfb
        self.ms_per_char = ms_per_char
        self.chunk_ms = chunk_ms
        self.chunk_delay = chunk_delay
        self.fail_on = set(fail_on)
        self.texts: list[str] = []
        self.open_streams = 0
        self.closed_streams = 0
        self._chunk = _tone(self._format, chunk_ms)

    @property
    def output_format(self) -> AudioFormat:
        return self._format

    def audio_bytes(self, text: str) -> int:
        """How many bytes of audio :meth:`synthesize` yields for ``text``."""
        return self._format.bytes_for(len(text) * self.ms_per_char)

    def word_offsets(self, text: str) -> list[float]:
        """Seconds from the start of ``text``'s audio to each of its words (word timing)."""
        return [m.start() * self.ms_per_char / 1000 for m in re.finditer(r"\S+", text)]

    async def synthesize(self, text: str) -> AsyncIterator[bytes]:
        self.texts.append(text)
        self.open_streams += 1
        try:
            await anyio.sleep(self.ttfb)
            if text in self.fail_on:
                raise ProviderError("tts", f"FakeTTS was told to fail on {text!r}")
            total, size = self.audio_bytes(text), len(self._chunk)
            for start in range(0, total, size):
                if start:
                    await anyio.sleep(self.chunk_delay)
                yield self._chunk[: min(size, total - start)]
        finally:
            self.open_streams -= 1
            self.closed_streams += 1


def _loud_windows(pcm: bytes, window: int, threshold: float) -> list[bool]:
    """For each ``window``-byte window of PCM16: is its RMS at least ``threshold``?

    One vectorised pass over all the windows of a chunk (a fake must be cheap:
    it runs under the benchmarks).
    """
    import numpy as np

    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float32)
    limit = threshold * threshold * (window // 2)  # RMS >= t  <=>  sum of squares >= t² n
    if len(pcm) == window:
        return [float(samples @ samples) >= limit]
    frames = samples.reshape(-1, window // 2)
    return [energy >= limit for energy in np.einsum("ij,ij->i", frames, frames).tolist()]


@functools.cache
def _tone(fmt: AudioFormat, ms: int, hz: float = 200.0, amplitude: int = 3000) -> bytes:
    """A sine tone (immutable bytes, built once per format and length)."""
    import numpy as np

    t = np.arange(fmt.sample_rate * ms // 1000) / fmt.sample_rate
    return (amplitude * np.sin(2 * np.pi * hz * t)).astype("<i2").tobytes()
