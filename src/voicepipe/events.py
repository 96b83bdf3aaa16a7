"""What a session emits, and the messages a client sends back.

Every event is a small frozen pydantic model with a ``type`` string. On the
wire (see ``docs/events.md``) audio goes as binary frames of raw PCM16 and
everything else as one JSON text frame per event. The original voice
assistant's types (``transcript_interim``, ``transcript_final``,
``assistant``, ``finish``) keep their names and shapes.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from voicepipe.audio import AudioFormat
from voicepipe.errors import ProtocolError, Stage

__all__ = [
    "AssistantDelta",
    "AssistantReply",
    "AudioChunk",
    "Control",
    "ErrorEvent",
    "Event",
    "Finish",
    "FormComplete",
    "FormProgress",
    "Interrupted",
    "Metrics",
    "Session",
    "SpeechStarted",
    "StartControl",
    "StopControl",
    "TextControl",
    "TranscriptFinal",
    "TranscriptInterim",
    "UserTurn",
    "event_from_json",
    "parse_control",
    "to_wire",
]


class _Event(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Session(_Event):
    """First event of every session: its id and the audio formats in and out."""

    type: Literal["session"] = "session"
    session_id: str
    input_format: AudioFormat
    output_format: AudioFormat | None = None


class SpeechStarted(_Event):
    """The user started speaking (may interrupt the assistant)."""

    type: Literal["speech_started"] = "speech_started"


class TranscriptInterim(_Event):
    """A provisional transcript of what the user is saying; later ones replace it."""

    type: Literal["transcript_interim"] = "transcript_interim"
    content: str


class TranscriptFinal(_Event):
    """A settled piece of the user's turn."""

    type: Literal["transcript_final"] = "transcript_final"
    content: str


class UserTurn(_Event):
    """The user finished their turn; ``content`` is the whole turn's text."""

    type: Literal["user_turn"] = "user_turn"
    content: str


class AssistantDelta(_Event):
    """A piece of the reply, emitted as it is spoken (with its audio, if any)."""

    type: Literal["assistant_delta"] = "assistant_delta"
    content: str


class AudioChunk(_Event):
    """Reply audio: raw PCM16 in ``format``. A binary frame on the wire."""

    type: Literal["audio"] = "audio"
    audio: bytes
    format: AudioFormat


class AssistantReply(_Event):
    """The reply is over; ``content`` is the whole text that was said."""

    type: Literal["assistant"] = "assistant"
    content: str
    interrupted: bool = False


class Interrupted(_Event):
    """The user barged in; the reply stopped. ``content`` is what had been spoken."""

    type: Literal["interrupted"] = "interrupted"
    content: str


class Metrics(_Event):
    """Latency and usage of one turn, in milliseconds and tokens (None: not measured)."""

    type: Literal["metrics"] = "metrics"
    turn: int
    end_of_turn_to_first_token_ms: float | None = None
    end_of_turn_to_first_audio_ms: float | None = None
    llm_ttft_ms: float | None = None
    tts_ttfb_ms: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


class ErrorEvent(_Event):
    """Something failed. ``recoverable`` says whether the session goes on."""

    type: Literal["error"] = "error"
    stage: Stage
    message: str
    recoverable: bool = True


class FormProgress(_Event):
    """A form answer was accepted and stored."""

    type: Literal["form_progress"] = "form_progress"
    field: str
    value: Any
    answered: int
    total: int


class FormComplete(_Event):
    """Every field of the form is answered and the form is stored as complete."""

    type: Literal["form_complete"] = "form_complete"
    form: str
    answers: dict[str, Any]


class Finish(_Event):
    """Last event of a session."""

    type: Literal["finish"] = "finish"
    reason: str = "end_of_input"


Event = Annotated[
    Session
    | SpeechStarted
    | TranscriptInterim
    | TranscriptFinal
    | UserTurn
    | AssistantDelta
    | AudioChunk
    | AssistantReply
    | Interrupted
    | Metrics
    | ErrorEvent
    | FormProgress
    | FormComplete
    | Finish,
    Field(discriminator="type"),
]

_event_adapter: TypeAdapter[Event] = TypeAdapter(Event)


def to_wire(event: _Event) -> str | bytes:
    """The wire form of an event: raw PCM bytes for audio, a JSON text otherwise."""
    if isinstance(event, AudioChunk):
        return event.audio
    return event.model_dump_json()


def event_from_json(text: str | bytes) -> Event:
    """Parse a JSON event frame (what a client receives) back into its model."""
    return _event_adapter.validate_json(text)


# --- client -> server control messages ---------------------------------------


class _Control(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class StartControl(_Control):
    """The client declares the format of the audio it will send."""

    type: Literal["start"] = "start"
    sample_rate: int = 16000
    channels: int = 1


class StopControl(_Control):
    """The client has no more audio: finish the turn in progress and end."""

    type: Literal["stop"] = "stop"


class TextControl(_Control):
    """A typed user turn, for clients without a microphone."""

    type: Literal["text"] = "text"
    content: str


Control = Annotated[StartControl | StopControl | TextControl, Field(discriminator="type")]
_control_adapter: TypeAdapter[Control] = TypeAdapter(Control)
_CONTROL_TYPES = ("start", "stop", "text")


def parse_control(raw: str | bytes) -> Control:
    """Parse a client's JSON control message, or raise :class:`ProtocolError` saying why."""
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"control message is not valid JSON: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("type"), str):
        raise ProtocolError('control message must be a JSON object with a "type" string')
    if data["type"] not in _CONTROL_TYPES:
        raise ProtocolError(
            f"unknown control message type {data['type']!r}; expected one of "
            + ", ".join(_CONTROL_TYPES)
        )
    try:
        return _control_adapter.validate_python(data)
    except ValidationError as exc:
        detail = "; ".join(f"{'.'.join(map(str, e['loc'][1:]))}: {e['msg']}" for e in exc.errors())
        raise ProtocolError(f"invalid {data['type']!r} message: {detail}") from exc
