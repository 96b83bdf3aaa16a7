from __future__ import annotations

import json

import pytest

from voicepipe.audio import AudioFormat
from voicepipe.errors import ProtocolError
from voicepipe.events import (
    AssistantReply,
    AudioChunk,
    ErrorEvent,
    Event,
    Finish,
    Session,
    StartControl,
    StopControl,
    TextControl,
    TranscriptFinal,
    TranscriptInterim,
    event_from_json,
    parse_control,
    to_wire,
)


def test_original_protocol_types_keep_their_shapes() -> None:
    assert json.loads(str(to_wire(TranscriptInterim(content="hel")))) == {
        "type": "transcript_interim",
        "content": "hel",
    }
    assert json.loads(str(to_wire(TranscriptFinal(content="hello")))) == {
        "type": "transcript_final",
        "content": "hello",
    }
    wire = json.loads(str(to_wire(AssistantReply(content="Hi there."))))
    assert wire["type"] == "assistant"
    assert wire["content"] == "Hi there."
    assert json.loads(str(to_wire(Finish())))["type"] == "finish"


def test_audio_is_binary_on_the_wire() -> None:
    chunk = AudioChunk(audio=b"\x01\x02", format=AudioFormat(24000))
    assert to_wire(chunk) == b"\x01\x02"


def test_json_events_roundtrip() -> None:
    events: list[Event] = [
        Session(session_id="s1", input_format=AudioFormat(), output_format=AudioFormat(24000)),
        ErrorEvent(stage="llm", message="rate limited", recoverable=True),
        AssistantReply(content="Hi", interrupted=True),
    ]
    for event in events:
        assert event_from_json(str(to_wire(event))) == event


def test_audio_is_not_json_and_junk_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError, match="binary frames"):
        event_from_json('{"type": "audio", "audio": "", "format": {}}')
    with pytest.raises(ProtocolError, match="not a voicepipe event"):
        event_from_json('{"type": "nope"}')


def test_events_are_frozen_and_audio_stays_out_of_reprs() -> None:
    chunk = AudioChunk(audio=b"\x00" * 100, format=AudioFormat())
    assert "audio=" not in repr(chunk)
    with pytest.raises(AttributeError):
        chunk.audio = b""  # type: ignore[misc]


def test_parse_control_messages() -> None:
    assert parse_control('{"type": "stop"}') == StopControl()
    assert parse_control(b'{"type": "start", "sample_rate": 48000}') == StartControl(
        sample_rate=48000
    )
    assert parse_control('{"type": "text", "content": "hi"}') == TextControl(content="hi")


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", 'JSON object with a "type"'),
        ('{"kind": "stop"}', 'JSON object with a "type"'),
        ('{"type": "dance"}', "unknown control message type 'dance'; expected one of start"),
        ('{"type": "text"}', "invalid 'text' message: content: Field required"),
        ('{"type": "start", "sample_rate": "fast"}', "sample_rate"),
        ('{"type": "stop", "extra": 1}', "extra"),
    ],
)
def test_parse_control_errors_say_why(raw: str, message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        parse_control(raw)
