from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from voicepipe.audio import AudioFormat
from voicepipe.errors import ProtocolError
from voicepipe.events import (
    AssistantReply,
    AudioChunk,
    ErrorEvent,
    Event,
    Finish,
    FormComplete,
    FormProgress,
    Metrics,
    Session,
    SpeechStarted,
    StartControl,
    StopControl,
    TextControl,
    ToolCallEvent,
    TranscriptFinal,
    TranscriptInterim,
    UserTurn,
    _Event,
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


_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),  # NaN and the infinities too: json.dumps writes them as NaN, Infinity
    st.text(),
    st.dictionaries(st.text(), st.one_of(st.integers(), st.text(), st.none())),
    st.lists(st.one_of(st.floats(), st.text())),
)


@given(content=st.text(), number=st.one_of(st.none(), st.floats(), st.integers()), value=_VALUES)
def test_to_json_writes_what_json_dumps_writes(
    content: str, number: float | None, value: object
) -> None:
    events: list[object] = [
        SpeechStarted(),
        TranscriptInterim(content=content),
        UserTurn(content=content, endpoint_ms=number),
        AssistantReply(content=content, interrupted=True),
        Metrics(turn=3, llm_ttft_ms=number, prompt_tokens=7, end_of_turn_wait_ms=0.0),
        ErrorEvent(stage="llm", message=content, recoverable=False),
        Session(session_id=content, input_format=AudioFormat(), output_format=None),
        Session(session_id="s", input_format=AudioFormat(8000), output_format=AudioFormat()),
        FormProgress(field=content, value=value, answered=1, total=2),
        FormComplete(form="f", answers={"a": value}),
        ToolCallEvent(id="c1", name=content, arguments={"x": value}),
        ToolCallEvent(id="c2", name="n", arguments=content),
        Finish(reason=content),
    ]
    for event in events:
        assert isinstance(event, _Event)
        expected = json.dumps(event.to_dict(), separators=(",", ":"), ensure_ascii=False)
        assert event.to_json() == expected
