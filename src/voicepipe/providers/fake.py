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
import warnings
from collections import deque
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Callable,
    Iterable,
    Iterator,
    Sequence,
)
from dataclasses import replace
from typing import TypeVar, overload

from pydantic import BaseModel, ValidationError

from voicepipe import clock
from voicepipe.audio import AudioFormat
from voicepipe.errors import ProviderError
from voicepipe.events import SpeechStarted, TranscriptFinal, TranscriptInterim, UserTurn
from voicepipe.providers.base import Emit, Message, ToolCall, ToolSpec, Usage

__all__ = ["FakeLLM", "FakeSTT", "FakeTTS", "LLMCall", "ToolCall"]

M = TypeVar("M", bound=BaseModel)
_C = TypeVar("_C")
_TOKEN = re.compile(r"\s*\S+\s*$|\s*\S+")
_LOUD, _QUIET = (True,), (False,)  # one window's verdict, as the windows' loop takes it


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
        # One coroutine, not a wrapper around another: every chunk's wake-up
        # passes through each frame of the await chain.
        self.sessions += 1
        self.open_sessions += 1
        try:
            window = format.bytes_for(self.window_ms)
            loud_windows = _LoudWindows(window, self.threshold)
            silence_windows = math.ceil(self.silence_ms / self.window_ms)
            interim_windows = max(1, self.interim_ms // self.window_ms)
            pending = b""
            speech = 0  # speech windows in the current turn (0: not in a turn)
            silence = 0
            words: list[str] = []
            shown = 0
            loud_one = loud_windows.one
            rms = loud_windows.rms  # inline below: this runs for every chunk
            threshold = self.threshold
            quiet = threshold - 1  # an RMS (rounded down) this low is surely quiet
            async for chunk in audio:
                size = len(chunk)
                self.received_bytes += size
                if not pending and size == window:  # one window: the common case
                    if rms is None:
                        is_loud = loud_one(chunk)
                    elif (floor := rms(chunk, 2)) <= quiet:
                        is_loud = False
                    elif floor >= threshold:
                        is_loud = True
                    else:  # within one unit under a fractional threshold: measure exactly
                        is_loud = loud_one(chunk)
                    if not is_loud and not speech:
                        continue  # silence outside a turn: nothing to do
                    loud: Sequence[bool] = _LOUD if is_loud else _QUIET
                else:
                    pending = pending + chunk if pending else chunk
                    whole = len(pending) - len(pending) % window
                    if not whole:
                        continue
                    loud = loud_windows(pending[:whole])
                    pending = pending[whole:]
                for is_speech in loud:
                    if is_speech:
                        if speech == 0:
                            words = self._next_turn()
                            await emit(SpeechStarted())
                        speech += 1
                        silence = 0
                        if not speech % interim_windows:
                            count = min(len(words), speech // interim_windows)
                            if count > shown:
                                shown = count
                                await emit(TranscriptInterim(content=" ".join(words[:count])))
                    elif speech:
                        silence += 1
                        if silence >= silence_windows:
                            waited, speech, silence, shown = silence, 0, 0, 0
                            await self._end_turn(words, waited, emit)
            if speech:
                await self._end_turn(words, silence, emit)
        finally:
            self.open_sessions -= 1

    async def _end_turn(self, words: list[str], silence: int, emit: Emit) -> None:
        """The turn is over after ``silence`` quiet windows: say what it was."""
        if words:
            text = " ".join(words)
            await emit(TranscriptFinal(content=text))
            await emit(UserTurn(content=text, endpoint_ms=silence * self.window_ms))

    def _next_turn(self) -> list[str]:
        turn = next(self._turns, None)
        if turn is None:
            self.unscripted_turns += 1
            return []
        return turn.split()


class LLMCall(list[Message]):
    """The messages of one :meth:`FakeLLM.stream` call (a list, so ``==`` a list of
    messages works), with the ``tools`` it was given (empty: none)."""

    def __init__(self, messages: Iterable[Message], tools: Iterable[ToolSpec] = ()) -> None:
        super().__init__(messages)
        self.tools: tuple[ToolSpec, ...] = tuple(tools)

    @property
    def tool_names(self) -> list[str]:
        return [t.name for t in self.tools]


ScriptItem = str | Exception | ToolCall | Sequence[str | ToolCall]
"""One scripted reply: text, an exception to raise, a tool call, or a list of
text pieces and tool calls (parallel calls, or text before a call)."""


class FakeLLM:
    """Scripted chat model.

    ``replies`` is a list used in order, or a callable from the message list to
    the reply; by default the last user message is echoed. A reply is text,
    an ``Exception`` (raised instead of replying), a :class:`ToolCall` (a call
    instead of text, when ``stream`` was given tools), or a list of text and
    calls (``[ToolCall("a"), ToolCall("b")]`` is two parallel calls). Calls
    without an id get ``call_1``, ``call_2``, ... Replies stream word by word:
    the first token after ``ttft`` seconds, then one every ``token_delay``.
    ``complete_json`` parses the next reply as JSON into the schema.
    :attr:`calls` records the messages and tools of the last ``keep_calls``
    ``stream`` calls (:attr:`json_calls` those of ``complete_json``); None keeps
    every one, which a long-lived fake (a soak, a server) should not.
    :attr:`n_calls` counts them all.
    """

    def __init__(
        self,
        replies: Sequence[ScriptItem] | Callable[[Sequence[Message]], ScriptItem] | None = None,
        *,
        ttft: float = 0.0,
        token_delay: float = 0.0,
        keep_calls: int | None = 1000,
    ) -> None:
        self._script: deque[ScriptItem] | None = None
        self._reply_fn: Callable[[Sequence[Message]], ScriptItem] | None = None
        if callable(replies):
            self._reply_fn = replies
        elif replies is not None:
            self._script = deque(replies)
        self.ttft = ttft
        self.token_delay = token_delay
        if keep_calls is not None and keep_calls < 0:
            raise ValueError("keep_calls must be >= 0, or None to keep every call")
        self.keep_calls = keep_calls
        self.calls: list[LLMCall] = []
        self.json_calls: list[list[Message]] = []
        self._made = 0  # calls made, kept or not
        self.open_streams = 0
        self.closed_streams = 0
        self.completed_streams = 0
        self._call_ids = 0

    def _reply(self, messages: Sequence[Message]) -> list[str | ToolCall]:
        if self._reply_fn is not None:
            reply = self._reply_fn(messages)
        elif self._script is None:
            users = [m.content for m in messages if m.role == "user"]
            reply = users[-1] if users else ""
        elif not self._script:
            raise ProviderError(
                "llm", f"FakeLLM has no scripted reply left for call {self.n_calls}"
            )
        else:
            reply = self._script.popleft()
        if isinstance(reply, Exception):
            raise reply
        if isinstance(reply, str | ToolCall):
            return [reply]
        return list(reply)

    @property
    def n_calls(self) -> int:
        """Every ``stream`` and ``complete_json`` call made, including those no longer kept."""
        return self._made

    def _record(self, calls: list[_C], call: _C) -> None:
        self._made += 1
        calls.append(call)
        keep = self.keep_calls
        if keep is not None and len(calls) > keep:
            del calls[: len(calls) - keep]

    @overload
    def stream(
        self, messages: Sequence[Message], *, usage: Usage | None = None
    ) -> AsyncGenerator[str, None]: ...

    @overload
    def stream(
        self,
        messages: Sequence[Message],
        *,
        usage: Usage | None = None,
        tools: Sequence[ToolSpec] | None = None,
    ) -> AsyncGenerator[str | ToolCall, None]: ...

    async def stream(
        self,
        messages: Sequence[Message],
        *,
        usage: Usage | None = None,
        tools: Sequence[ToolSpec] | None = None,
    ) -> AsyncGenerator[str | ToolCall, None]:
        self._record(self.calls, LLMCall(messages, tools or ()))
        self.open_streams += 1
        try:
            await clock.sleep(self.ttft)
            parts: list[str | ToolCall] = []
            for part in self._reply(messages):
                if isinstance(part, str):
                    parts += _TOKEN.findall(part)
                elif not tools:
                    raise ProviderError(
                        "llm", f"FakeLLM's script calls {part.name!r} but stream() got no tools="
                    )
                elif part.id:
                    parts.append(part)
                else:
                    self._call_ids += 1
                    parts.append(replace(part, id=f"call_{self._call_ids}"))
            for index, token in enumerate(parts):
                if index:
                    await clock.sleep(self.token_delay)
                yield token
            if usage is not None:
                usage.prompt_tokens = sum(len(m.content.split()) for m in messages)
                usage.completion_tokens = len(parts)
            self.completed_streams += 1
        finally:
            self.open_streams -= 1
            self.closed_streams += 1

    async def complete_json(
        self, messages: Sequence[Message], schema: type[M], *, usage: Usage | None = None
    ) -> M:
        self._record(self.json_calls, list(messages))
        await clock.sleep(self.ttft)
        parts = self._reply(messages)
        if not all(isinstance(part, str) for part in parts):
            raise ProviderError("llm", "FakeLLM's scripted reply to complete_json has a tool call")
        text = "".join(part for part in parts if isinstance(part, str))
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
    :attr:`texts` holds the last ``keep_texts`` texts synthesized (None keeps
    all); :attr:`n_texts` counts them all.
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
        keep_texts: int | None = 1000,
    ) -> None:
        if keep_texts is not None and keep_texts < 0:
            raise ValueError("keep_texts must be >= 0, or None to keep every text")
        self.keep_texts = keep_texts
        self.n_texts = 0
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
        self.n_texts += 1
        self.texts.append(text)
        if self.keep_texts is not None and len(self.texts) > self.keep_texts:
            del self.texts[: len(self.texts) - self.keep_texts]
        self.open_streams += 1
        try:
            await clock.sleep(self.ttfb)
            if text in self.fail_on:
                raise ProviderError("tts", f"FakeTTS was told to fail on {text!r}")
            total, size = self.audio_bytes(text), len(self._chunk)
            for start in range(0, total, size):
                if start:
                    await clock.sleep(self.chunk_delay)
                yield self._chunk[: min(size, total - start)]
        finally:
            self.open_streams -= 1
            self.closed_streams += 1


class _LoudWindows:
    """For each ``window``-byte window of PCM16: is its RMS at least ``threshold``?

    A fake must be cheap: it runs under the benchmarks, once per audio chunk.
    The stdlib's ``audioop.rms`` (Python < 3.13) judges a 20 ms window in
    about a third of the instructions NumPy needs; it rounds the RMS down, so
    a window within one unit under a fractional threshold is measured again
    exactly. Elsewhere one vectorised NumPy pass judges all the windows.
    """

    def __init__(self, window: int, threshold: float) -> None:
        import numpy as np  # here, not at the top: import voicepipe stays fast

        self._np = np
        self._int16 = np.dtype("<i2")
        self._float32 = np.dtype(np.float32)
        self._window = window
        self._samples = window // 2
        self._threshold = threshold
        self._limit = threshold * threshold * self._samples  # RMS >= t  <=>  Σx² >= t²·n
        self.rms = _audioop_rms()  # audioop.rms(pcm, 2): the RMS rounded down

    def __call__(self, pcm: bytes) -> Sequence[bool]:
        window = self._window
        if self.rms is not None:
            return [self.one(pcm[i : i + window]) for i in range(0, len(pcm), window)]
        samples = self._np.frombuffer(pcm, dtype=self._int16).astype(self._float32)
        frames = samples.reshape(-1, self._samples)
        energies: list[float] = self._np.einsum("ij,ij->i", frames, frames).tolist()
        return [energy >= self._limit for energy in energies]

    def one(self, pcm: bytes) -> bool:
        """Is this one window loud?"""
        if self.rms is None:
            return self(pcm)[0]
        floor = self.rms(pcm, 2)  # the true RMS is in [floor, floor + 1)
        if floor >= self._threshold:
            return True
        if floor + 1 <= self._threshold:
            return False
        samples = self._np.frombuffer(pcm, dtype=self._int16).astype(self._np.float64)
        return float(samples.dot(samples)) >= self._limit


@functools.cache  # once: catch_warnings and the import are not free, and run per session
def _audioop_rms() -> Callable[[bytes, int], int] | None:
    """``audioop.rms`` where the stdlib still has it (deprecated, gone in Python 3.13)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            import audioop
    except ImportError:
        return None
    return audioop.rms


@functools.cache
def _tone(fmt: AudioFormat, ms: int, hz: float = 200.0, amplitude: int = 3000) -> bytes:
    """A sine tone (immutable bytes, built once per format and length)."""
    import numpy as np

    t = np.arange(fmt.sample_rate * ms // 1000) / fmt.sample_rate
    return (amplitude * np.sin(2 * np.pi * hz * t)).astype("<i2").tobytes()
