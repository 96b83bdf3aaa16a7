"""What a session emits, and the messages a client sends back.

Every event is a small frozen dataclass with a ``type`` string (a class
attribute, so it is not a constructor argument). On the
wire (see ``docs/events.md``) audio goes as binary frames of raw PCM16 and
everything else as one JSON text frame per event. The original voice
assistant's types (``transcript_interim``, ``transcript_final``,
``assistant``, ``finish``) keep their names and shapes.
"""

from __future__ import annotations

import json
import json.encoder
import math
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, Literal

from voicepipe.audio import AudioFormat
from voicepipe.errors import ProtocolError, Stage

__all__ = [
    "AssistantDelta",
    "AssistantReply",
    "AudioChunk",
    "Control",
    "EndTurnControl",
    "ErrorEvent",
    "Event",
    "Finish",
    "FormComplete",
    "FormProgress",
    "Interrupted",
    "Metrics",
    "Paused",
    "Resumed",
    "Session",
    "SpeechStarted",
    "StartControl",
    "StopControl",
    "TextControl",
    "ToolCallEvent",
    "ToolResultEvent",
    "TranscriptFinal",
    "TranscriptInterim",
    "UserTurn",
    "event_from_json",
    "parse_control",
    "to_wire",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class _Event:
    """Base of all events: a frozen dataclass tagged with its wire ``type``."""

    type: ClassVar[str]

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready form: a dict with ``type`` first (audio formats as dicts)."""
        out: dict[str, Any] = {"type": self.type}
        for name, _ in _layout(type(self))[1]:
            value = getattr(self, name)
            out[name] = _format_dict(value) if isinstance(value, AudioFormat) else value
        return out

    def to_json(self) -> str:
        """``to_dict()`` as compact JSON (``json.dumps`` with ``separators=(",", ":")``,
        ``ensure_ascii=False``), the same text, written without the dict and the encoder
        object ``json.dumps`` makes per call: every event a session sends passes here."""
        head, names = _layout(type(self))
        parts = [head]
        for name, key in names:
            value = getattr(self, name)
            kind = type(value)
            if kind is str:
                parts += (key, _string(value))
            elif value is None:
                parts += (key, "null")
            elif kind is bool:
                parts += (key, "true" if value else "false")
            elif kind is int or (kind is float and _finite(value)):
                parts += (key, repr(value))
            elif kind is AudioFormat:
                parts += (key, _format_json(value))
            else:
                parts += (key, _encode(value))
        parts.append("}")
        return "".join(parts)


@dataclass(frozen=True, slots=True, kw_only=True)
class Session(_Event):
    """First event of every session: its id and the audio formats in and out."""

    type: ClassVar[Literal["session"]] = "session"
    session_id: str
    input_format: AudioFormat
    output_format: AudioFormat | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SpeechStarted(_Event):
    """The user started speaking (may interrupt the assistant)."""

    type: ClassVar[Literal["speech_started"]] = "speech_started"


@dataclass(frozen=True, slots=True, kw_only=True)
class TranscriptInterim(_Event):
    """A provisional transcript of what the user is saying; later ones replace it."""

    type: ClassVar[Literal["transcript_interim"]] = "transcript_interim"
    content: str


@dataclass(frozen=True, slots=True, kw_only=True)
class TranscriptFinal(_Event):
    """A settled piece of the user's turn."""

    type: ClassVar[Literal["transcript_final"]] = "transcript_final"
    content: str


@dataclass(frozen=True, slots=True, kw_only=True)
class UserTurn(_Event):
    """The user finished their turn; ``content`` is the whole turn's text.

    ``endpoint_ms``, when the STT knows it, is how long after the last word it
    ended the turn: the trailing silence it waited for (audio time) plus any
    transcription after it. A measurement, so it does not take part in ``==``.
    """

    type: ClassVar[Literal["user_turn"]] = "user_turn"
    content: str
    endpoint_ms: float | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class AssistantDelta(_Event):
    """A piece of the reply, emitted as it is spoken (with its audio, if any)."""

    type: ClassVar[Literal["assistant_delta"]] = "assistant_delta"
    content: str


@dataclass(frozen=True, slots=True, kw_only=True)
class AudioChunk(_Event):
    """Reply audio: raw PCM16 in ``format``. A binary frame on the wire."""

    type: ClassVar[Literal["audio"]] = "audio"
    audio: bytes = field(repr=False)
    format: AudioFormat


@dataclass(frozen=True, slots=True, kw_only=True)
class AssistantReply(_Event):
    """The reply is over; ``content`` is the whole text that was said."""

    type: ClassVar[Literal["assistant"]] = "assistant"
    content: str
    interrupted: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Interrupted(_Event):
    """The user barged in; the reply stopped. ``content`` is what had been spoken."""

    type: ClassVar[Literal["interrupted"]] = "interrupted"
    content: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Paused(_Event):
    """The caller started speaking over the reply: pause playback, keep what is buffered.

    A ``resumed`` (it was a cough or a backchannel: play on) or an
    ``interrupted`` (a real turn: drop the buffer) always follows.
    """

    type: ClassVar[Literal["paused"]] = "paused"


@dataclass(frozen=True, slots=True, kw_only=True)
class Resumed(_Event):
    """The speech that paused the reply was not a turn: play on from where playback paused."""

    type: ClassVar[Literal["resumed"]] = "resumed"


@dataclass(frozen=True, slots=True, kw_only=True)
class Metrics(_Event):
    """Latency and usage of one turn, in milliseconds and tokens (None: not measured).

    ``end_of_speech_to_first_audio_ms`` is what the user waits: the STT's
    endpointing (``stt_endpoint_ms``, which includes the end-of-turn
    detector's wait) plus end of turn to first audio.
    ``end_of_turn_wait_ms`` is how long the end-of-turn detector held the
    turn for more speech after the STT ended it (0: not held).
    ``tool_ms`` is the time the turn's tool calls took (parallel calls count
    once), None when no tool ran.
    """

    type: ClassVar[Literal["metrics"]] = "metrics"
    turn: int
    end_of_speech_to_first_audio_ms: float | None = None
    stt_endpoint_ms: float | None = None
    end_of_turn_to_first_token_ms: float | None = None
    end_of_turn_to_first_audio_ms: float | None = None
    llm_ttft_ms: float | None = None
    tts_ttfb_ms: float | None = None
    end_of_turn_wait_ms: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    tool_ms: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ErrorEvent(_Event):
    """Something failed. ``recoverable`` says whether the session goes on."""

    type: ClassVar[Literal["error"]] = "error"
    stage: Stage
    message: str
    recoverable: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class FormProgress(_Event):
    """A form answer was accepted and stored."""

    type: ClassVar[Literal["form_progress"]] = "form_progress"
    field: str
    value: Any
    answered: int
    total: int


@dataclass(frozen=True, slots=True, kw_only=True)
class FormComplete(_Event):
    """Every field of the form is answered and the form is stored as complete."""

    type: ClassVar[Literal["form_complete"]] = "form_complete"
    form: str
    answers: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolCallEvent(_Event):
    """The model asked for a tool call and it is starting.

    ``arguments`` is the decoded JSON object (the model's raw text when it is
    not valid JSON). Each ``tool_call`` is followed, some time later, by the
    ``tool_result`` with the same ``id``, even after a barge-in.
    """

    type: ClassVar[Literal["tool_call"]] = "tool_call"
    id: str
    name: str
    arguments: dict[str, Any] | str = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolResultEvent(_Event):
    """A tool call finished: ``ok``, and ``content`` (the result or the error, shortened)."""

    type: ClassVar[Literal["tool_result"]] = "tool_result"
    id: str
    name: str
    ok: bool
    content: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Finish(_Event):
    """Last event of a session."""

    type: ClassVar[Literal["finish"]] = "finish"
    reason: str = "end_of_input"


Event = (
    Session
    | SpeechStarted
    | TranscriptInterim
    | TranscriptFinal
    | UserTurn
    | AssistantDelta
    | AudioChunk
    | AssistantReply
    | Interrupted
    | Paused
    | Resumed
    | Metrics
    | ErrorEvent
    | FormProgress
    | FormComplete
    | ToolCallEvent
    | ToolResultEvent
    | Finish
)
"""Any event a session emits."""

_TYPES: dict[str, type[_Event]] = {
    cls.type: cls
    for cls in (
        Session, SpeechStarted, TranscriptInterim, TranscriptFinal, UserTurn, AssistantDelta,
        AudioChunk, AssistantReply, Interrupted, Paused, Resumed, Metrics, ErrorEvent,
        FormProgress, FormComplete, ToolCallEvent, ToolResultEvent, Finish,
    )
}  # fmt: skip


def to_wire(event: Event) -> str | bytes:
    """The wire form of an event: raw PCM bytes for audio, a JSON text otherwise."""
    if isinstance(event, AudioChunk):
        return event.audio
    return event.to_json()


def event_from_json(text: str | bytes) -> Event:
    """Parse a JSON event frame (what a client receives) back into its event."""
    try:
        data = json.loads(text)
        cls = _TYPES[data.pop("type")]
        if cls is AudioChunk:
            raise TypeError("audio travels as binary frames, not JSON")
        for key in ("input_format", "output_format", "format"):
            if isinstance(data.get(key), dict):
                data[key] = AudioFormat(**data[key])
        event: Event = cls(**data)  # type: ignore[assignment]
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ProtocolError(f"not a voicepipe event: {exc}") from exc
    return event


_string: Callable[[str], str] = json.encoder.encode_basestring  # json.dumps's own (C)
_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
_finite = math.isfinite
_LAYOUTS: dict[type[_Event], tuple[str, tuple[tuple[str, str], ...]]] = {}


def _layout(cls: type[_Event]) -> tuple[str, tuple[tuple[str, str], ...]]:
    """An event class's JSON head (``{"type":...``) and its fields with their keys, made once."""
    layout = _LAYOUTS.get(cls)
    if layout is None:
        head = '{"type":' + _encode(cls.type)
        names = tuple((f.name, "," + _encode(f.name) + ":") for f in fields(cls))
        layout = _LAYOUTS[cls] = (head, names)
    return layout


_FORMATS: dict[AudioFormat, str] = {}


def _format_json(fmt: AudioFormat) -> str:
    """An audio format's JSON, kept (a server sees a handful of formats, one per session)."""
    text = _FORMATS.get(fmt)
    if text is None:
        if len(_FORMATS) >= 64:
            _FORMATS.clear()
        text = _FORMATS[fmt] = _encode(_format_dict(fmt))
    return text


def _format_dict(fmt: AudioFormat) -> dict[str, Any]:
    return {"sample_rate": fmt.sample_rate, "channels": fmt.channels, "encoding": fmt.encoding}


# --- client -> server control messages ---------------------------------------


@dataclass(frozen=True, slots=True)
class StartControl:
    """The client declares the audio it will send and the codecs it wants (``input``,
    ``output``: see ``docs/server.md``; ``None`` keeps the URL's or the default)."""

    sample_rate: int = 16000
    channels: int = 1
    input: str | None = None
    output: str | None = None
    type: ClassVar[Literal["start"]] = "start"


@dataclass(frozen=True, slots=True)
class StopControl:
    """The client has no more audio: finish the turn in progress and end."""

    type: ClassVar[Literal["stop"]] = "stop"


@dataclass(frozen=True, slots=True)
class EndTurnControl:
    """Push-to-talk: the user's turn is over now (no waiting for silence)."""

    type: ClassVar[Literal["end_turn"]] = "end_turn"


@dataclass(frozen=True, slots=True)
class TextControl:
    """A typed user turn, for clients without a microphone."""

    content: str
    type: ClassVar[Literal["text"]] = "text"


Control = StartControl | StopControl | TextControl | EndTurnControl

# type -> (class, {field: expected type}, required fields)
_CONTROLS: dict[str, tuple[type[Control], dict[str, type], frozenset[str]]] = {
    "start": (
        StartControl,
        {"sample_rate": int, "channels": int, "input": str, "output": str},
        frozenset(),
    ),
    "stop": (StopControl, {}, frozenset()),
    "text": (TextControl, {"content": str}, frozenset({"content"})),
    "end_turn": (EndTurnControl, {}, frozenset()),
}


def parse_control(raw: str | bytes) -> Control:
    """Parse a client's JSON control message, or raise :class:`ProtocolError` saying why."""
    try:
        data = json.loads(raw)
    except RecursionError:  # "[" * 100000: bad input, not a crash
        raise ProtocolError("control message is nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"control message is not valid JSON: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("type"), str):
        raise ProtocolError('control message must be a JSON object with a "type" string')
    kind = data.pop("type")
    if kind not in _CONTROLS:
        raise ProtocolError(
            f"unknown control message type {kind!r}; expected one of " + ", ".join(_CONTROLS)
        )
    cls, expected, required = _CONTROLS[kind]
    problems = [f"{name}: Field required" for name in sorted(required - data.keys())]
    for name, value in data.items():
        want = expected.get(name)
        if want is None:
            problems.append(f"{name}: Extra inputs are not permitted")
        elif not isinstance(value, want) or isinstance(value, bool):
            problems.append(f"{name}: must be {want.__name__}, got {type(value).__name__}")
    if problems:
        raise ProtocolError(f"invalid {kind!r} message: " + "; ".join(problems))
    control: Control = cls(**data)
    return control
