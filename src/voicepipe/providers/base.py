"""The three provider protocols: speech-to-text, language model, text-to-speech.

A provider is any object with the right methods; nothing to inherit. The
pipeline only ever talks to these protocols, so a vendor, an offline engine
and a test fake are interchangeable.

Streaming STTs must send audio and receive transcripts at the same time, which
needs a task group, and anyio forbids yielding from inside one in an async
generator. So :class:`STT` *pushes* its events into a callback instead of
yielding them. LLM and TTS output is a plain async iterator; implementations
must not hold a cancel scope or task group open across a ``yield``.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar, runtime_checkable

from voicepipe.audio import AudioFormat
from voicepipe.events import ErrorEvent, SpeechStarted, TranscriptFinal, TranscriptInterim, UserTurn

__all__ = [
    "LLM",
    "STT",
    "TTS",
    "Emit",
    "Expectation",
    "ExpectingSTT",
    "Message",
    "STTEvent",
    "STTHint",
    "ToolCall",
    "ToolLLM",
    "ToolSpec",
    "Usage",
]

STTEvent = SpeechStarted | TranscriptInterim | TranscriptFinal | UserTurn | ErrorEvent
"""What an STT reports: speech started, interim and final text, the end of a
turn (``UserTurn`` with the whole turn's text), and recoverable errors (a
reconnect, say). A non-recoverable failure is raised as ``ProviderError``."""

Emit = Callable[[STTEvent], Awaitable[None]]

if TYPE_CHECKING:
    from pydantic import BaseModel

M = TypeVar("M", bound="BaseModel")


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """A tool as the model sees it: a name, what it does, and a JSON schema of its arguments."""

    name: str
    description: str = ""
    parameters: Mapping[str, Any] = field(
        default_factory=lambda: {"type": "object", "properties": {}}
    )


@dataclass(frozen=True, slots=True)
class ToolCall:
    """The model asks for a tool to be run.

    ``arguments`` is the decoded JSON object, or the model's raw text when it
    is not valid JSON (the tool runner then answers the model with the error).
    ``id`` pairs the call with its result; an empty id is filled in by
    whoever records the call.
    """

    name: str
    arguments: Mapping[str, Any] | str = field(default_factory=dict)
    id: str = ""


@dataclass(frozen=True, slots=True)
class Message:
    """One chat message for the LLM.

    An assistant message may carry the ``tool_calls`` it made (its
    ``content`` may then be empty); a ``tool`` message carries one call's
    result in ``content`` and the call's id in ``tool_call_id``.
    """

    role: Literal["system", "user", "assistant", "tool"]
    content: str
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None


@dataclass(slots=True)
class Usage:
    """Token counts of one LLM call; the provider fills in what it knows."""

    prompt_tokens: int | None = None
    completion_tokens: int | None = None


@runtime_checkable
class STT(Protocol):
    """Speech-to-text over a stream of audio chunks."""

    async def transcribe(
        self, audio: AsyncIterable[bytes], format: AudioFormat, emit: Emit
    ) -> None:
        """Consume ``audio`` (raw chunks in ``format``) until it ends, calling
        ``emit`` for each event, and return once the last words are reported.

        Raise :class:`voicepipe.errors.ProviderError` (``recoverable=False``)
        when transcription cannot go on. Every connection opened here must be
        closed when this returns, raises, or is cancelled.
        """
        ...


@dataclass(frozen=True, slots=True)
class STTHint:
    """What the caller's next turn should hold, as the policy said (``Reply.expecting``).

    ``kind`` is ``"phone"``, ``"email"``, ``"number"``, ``"date"``,
    ``"yes_no"``, ``"choice"``, ...; ``options`` are the words that answer
    it when there is a closed set (a choice's options); ``language`` is the
    language it will be said in; ``confirmed`` is True when a wrong value
    will be read back to the caller before it is stored, so an STT may guess
    more boldly. An STT may use it to narrow what it listens for.
    """

    kind: str
    options: tuple[str, ...] = ()
    language: str = "en"
    confirmed: bool = False


class Expectation:
    """One session's current :class:`STTHint`, set by the pipeline once per reply.

    The STT reads ``hint`` when it decides what an utterance said; None
    means free speech. One per session: STT objects are shared by sessions.

    The other way round, an STT that found other readings of a turn (less
    sure than the one it reported: an n-best list, or the turn as a grammar
    of the expected answers heard it) notes them with :meth:`note`; the
    pipeline hands them to the policy with that turn
    (``PolicyContext.alternatives``), which should confirm a value it takes
    from one with the caller rather than store it.
    """

    __slots__ = ("_alternatives", "hint")

    _KEPT = 8  # turns whose alternatives are kept: the STT may run ahead of the replies

    def __init__(self, hint: STTHint | None = None) -> None:
        self.hint = hint
        self._alternatives: dict[str, tuple[str, ...]] = {}

    def note(self, text: str, alternatives: Sequence[str]) -> None:
        """The STT reported the turn ``text``, and heard it as ``alternatives`` too (best first)."""
        kept = tuple(a for a in alternatives if a and a != text)
        self._alternatives.pop(text, None)
        if kept:
            self._alternatives[text] = kept
            while len(self._alternatives) > self._KEPT:
                del self._alternatives[next(iter(self._alternatives))]

    def alternatives(self, text: str) -> tuple[str, ...]:
        """The other readings noted for the turn ``text`` (empty if none, or if turns were
        joined into ``text``: the alternatives were of a part of it)."""
        return self._alternatives.get(text, ())


@runtime_checkable
class ExpectingSTT(Protocol):
    """An STT that can also use the policy's :class:`STTHint` (optional).

    ``transcribe_expecting`` is :meth:`STT.transcribe` with the session's
    :class:`Expectation`, which changes as the conversation goes on. The
    pipeline calls it instead of ``transcribe`` when the STT has it; STTs
    without it are unaffected.
    """

    async def transcribe_expecting(
        self, audio: AsyncIterable[bytes], format: AudioFormat, emit: Emit, expect: Expectation
    ) -> None: ...


def transcribe(
    stt: STT, audio: AsyncIterable[bytes], format: AudioFormat, emit: Emit, expect: Expectation
) -> Awaitable[None]:
    """Run ``stt`` on ``audio``, handing it ``expect`` when it can use one."""
    # What isinstance(stt, ExpectingSTT) checks, without typing's slow protocol check.
    expecting = getattr(stt, "transcribe_expecting", None)
    if expecting is not None:
        result: Awaitable[None] = expecting(audio, format, emit, expect)
        return result
    return stt.transcribe(audio, format, emit)


@runtime_checkable
class LLM(Protocol):
    """A chat language model."""

    def stream(
        self, messages: Sequence[Message], *, usage: Usage | None = None
    ) -> AsyncIterator[str]:
        """Yield the reply as text deltas as they arrive.

        When ``usage`` is given, fill it in with token counts (if known) by the
        time the iterator ends. Closing the iterator early (``aclose()``, as on
        barge-in) must close the underlying request at once.
        """
        ...

    async def complete_json(
        self, messages: Sequence[Message], schema: type[M], *, usage: Usage | None = None
    ) -> M:
        """Return a reply that validates as ``schema``, or raise ProviderError."""
        ...


@runtime_checkable
class ToolLLM(Protocol):
    """A chat language model that can also ask for tool calls.

    Its ``stream`` takes ``tools=`` and then yields :class:`ToolCall` items
    besides text deltas, each call once and complete (arguments whole). To
    stay an :class:`LLM` as well, declare ``stream`` with two overloads (see
    ``FakeLLM.stream``): without ``tools`` it yields ``str`` only.
    """

    def stream(
        self,
        messages: Sequence[Message],
        *,
        usage: Usage | None = None,
        tools: Sequence[ToolSpec] | None = None,
    ) -> AsyncIterator[str | ToolCall]:
        """Like :meth:`LLM.stream`; with ``tools``, calls come as :class:`ToolCall` items."""
        ...

    async def complete_json(
        self, messages: Sequence[Message], schema: type[M], *, usage: Usage | None = None
    ) -> M: ...


@runtime_checkable
class TTS(Protocol):
    """Text-to-speech."""

    @property
    def output_format(self) -> AudioFormat:
        """The format of every chunk :meth:`synthesize` yields."""
        ...

    def synthesize(self, text: str) -> AsyncIterator[bytes]:
        """Yield PCM16 chunks of ``text`` spoken, as soon as each is ready.

        Closing the iterator early (barge-in) must stop the work at once.
        """
        ...
