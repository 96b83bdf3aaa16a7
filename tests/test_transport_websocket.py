"""The WebSocket transport: the wire protocol through Starlette's TestClient (on asyncio
and trio), and through a real ``websockets`` client against uvicorn on 127.0.0.1."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import socket
import warnings
from collections.abc import AsyncIterable, AsyncIterator, Callable, MutableMapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import anyio
import anyio.lowlevel
import pytest
from anyio.streams.memory import MemoryObjectReceiveStream as Stream
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.types import ASGIApp
from starlette.websockets import WebSocket
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from tests.dialect_support import FakeLink
from tests.support import FORMAT, silence, tone, utterance
from tests.uvicorn_support import in_process, loopback
from voicepipe import AudioFormat, Pipeline
from voicepipe.audio import chunk_pcm, wav_bytes
from voicepipe.cli.serve import PICOWS
from voicepipe.errors import ProtocolError
from voicepipe.events import AssistantReply, AudioChunk, ErrorEvent, Event, Interrupted
from voicepipe.providers.base import Emit
from voicepipe.providers.fake import FakeLLM, FakeSTT, FakeTTS
from voicepipe.transports.dialect import Dialect, Link, parse_json
from voicepipe.transports.dialects.voicepipe import END_TURN_SILENCE_MS, VoicepipeDialect
from voicepipe.transports.websocket import TAP, serve

with warnings.catch_warnings():
    # Starlette asks for httpx2 instead of httpx with a warning at import (see docs/server.md).
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient as TestClient
    from starlette.testclient import WebSocketTestSession

# -- helpers ----------------------------------------------------------------------


@dataclass
class Fakes:
    stt: FakeSTT
    llm: FakeLLM
    tts: FakeTTS

    def pipeline(self, **kwargs: Any) -> Pipeline:
        return Pipeline(stt=self.stt, llm=self.llm, tts=self.tts, input_format=FORMAT, **kwargs)

    @property
    def all_closed(self) -> bool:
        return self.stt.closed and self.llm.open_streams == 0 and self.tts.open_streams == 0


def fakes(turns: list[str], replies: list[str], **tts: Any) -> Fakes:
    return Fakes(FakeSTT(turns), FakeLLM(replies), FakeTTS(**tts))


@dataclass
class Received:
    """What a client got: JSON events, audio bytes, and the close code and reason."""

    events: list[dict[str, Any]] = field(default_factory=list)
    frames: list[str] = field(default_factory=list)  # event types, "audio" per run of audio
    audio: bytes = b""
    code: int | None = None
    reason: str = ""

    def add(self, frame: str | bytes) -> None:
        if isinstance(frame, bytes):
            self.audio += frame
            if not self.frames or self.frames[-1] != "audio":
                self.frames.append("audio")
            return
        event = json.loads(frame)
        self.events.append(event)
        self.frames.append(event["type"])

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["type"] == kind]

    @property
    def errors(self) -> list[str]:
        return [e["message"] for e in self.of("error")]


def drain(ws: WebSocketTestSession, into: Received | None = None) -> Received:
    """Read from a TestClient socket until the server closes it."""
    got = into or Received()
    while True:
        message = ws.receive()
        if message["type"] == "websocket.close":
            got.code, got.reason = message["code"], message.get("reason", "")
            return got
        got.add(message["bytes"] if message.get("bytes") is not None else message["text"])


async def adrain(ws: ClientConnection, into: Received | None = None) -> Received:
    """Read from a real socket until the server closes it."""
    got = into or Received()
    try:
        while True:
            got.add(await ws.recv())
    except ConnectionClosed as closed:
        if closed.rcvd is not None:
            got.code, got.reason = closed.rcvd.code, closed.rcvd.reason
    return got


def send_audio(ws: WebSocketTestSession, pcm: bytes, fmt: AudioFormat = FORMAT) -> None:
    for chunk in chunk_pcm(pcm, fmt, 20):
        ws.send_bytes(chunk)


def stop(ws: WebSocketTestSession) -> None:
    ws.send_text(json.dumps({"type": "stop"}))


def app_serving(make: Callable[[WebSocket], Pipeline], **options: Any) -> Starlette:
    async def endpoint(websocket: WebSocket) -> None:
        await serve(websocket, make(websocket), **options)

    return Starlette(routes=[WebSocketRoute("/ws", endpoint)])


@asynccontextmanager
async def serve_on_loopback(app: ASGIApp, ws: str = PICOWS) -> AsyncIterator[str]:
    """Run ``app`` under uvicorn on a free port of 127.0.0.1 with the WebSocket layer
    ``ws`` (by default ``voicepipe serve``'s); yield ``host:port``."""
    async with in_process(app, lifespan="on", timeout_graceful_shutdown=5, ws=ws) as (_, port):
        yield f"127.0.0.1:{port}"


Backend = Literal["asyncio", "trio"]


@pytest.fixture(params=["asyncio", "trio"])
def backend(request: pytest.FixtureRequest) -> Backend:
    name: Backend = request.param
    return name


@pytest.fixture(params=["picows", "websockets-sansio"])
def ws_layer(request: pytest.FixtureRequest) -> str:
    """The WebSocket layer under uvicorn: ``voicepipe serve``'s, and uvicorn's default."""
    return PICOWS if request.param == "picows" else str(request.param)


def client(app: ASGIApp, backend: Backend) -> TestClient:
    return TestClient(app, backend=backend)


# -- the protocol through the TestClient ---------------------------------------------


def test_conversation_over_the_socket(backend: Backend) -> None:
    f = fakes(["hello there"], ["Hi. How are you?"])
    with (
        client(app_serving(lambda ws: f.pipeline()), backend) as c,
        c.websocket_connect("/ws") as ws,
    ):
        send_audio(ws, utterance())
        stop(ws)
        got = drain(ws)

    assert got.frames == [
        "session",
        "speech_started", "transcript_interim", "transcript_interim", "transcript_final",
        "user_turn",
        "assistant_delta", "audio", "assistant_delta", "audio", "assistant", "metrics",
        "finish",
    ]  # fmt: skip
    session = got.events[0]
    assert session["input_format"] == {"sample_rate": 16000, "channels": 1, "encoding": "pcm16"}
    assert session["output_format"]["sample_rate"] == f.tts.output_format.sample_rate
    assert got.of("user_turn")[0]["content"] == "hello there"
    assert got.of("assistant")[0]["content"] == "Hi. How are you?"
    assert len(got.audio) == sum(f.tts.audio_bytes(t) for t in f.tts.texts)
    assert (got.code, got.reason) == (1000, "end_of_input")
    assert f.stt.received_bytes == len(utterance())
    assert f.all_closed


def test_format_declared_in_the_query_is_converted(backend: Backend) -> None:
    f = fakes(["hi"], ["Hello."])
    fmt = AudioFormat(48000, 2)
    pcm = tone(400, fmt) + silence(500, fmt)
    app = app_serving(lambda ws: f.pipeline())
    with client(app, backend) as c, c.websocket_connect("/ws?sample_rate=48000&channels=2") as ws:
        send_audio(ws, pcm, fmt)
        stop(ws)
        got = drain(ws)
    assert got.events[0]["input_format"]["sample_rate"] == 16000  # what the pipeline hears
    assert got.of("user_turn")[0]["content"] == "hi"
    assert not got.errors
    # 48 kHz stereo became 16 kHz mono: a sixth of the bytes, give or take the filter's edge.
    assert abs(f.stt.received_bytes - len(pcm) // 6) <= FORMAT.bytes_for(5)
    assert got.code == 1000


def test_start_message_declares_the_format_before_the_first_audio(backend: Backend) -> None:
    f = fakes(["hi"], ["Hello."])
    fmt = AudioFormat(8000, 1)
    with (
        client(app_serving(lambda ws: f.pipeline()), backend) as c,
        c.websocket_connect("/ws") as ws,
    ):
        ws.send_text(json.dumps({"type": "start", "sample_rate": 8000, "channels": 1}))
        send_audio(ws, tone(400, fmt) + silence(500, fmt), fmt)
        ws.send_text(json.dumps({"type": "start", "sample_rate": 16000}))
        ws.send_text(json.dumps({"type": "start", "sample_rate": 1000}))
        stop(ws)
        got = drain(ws)
    assert got.of("user_turn")[0]["content"] == "hi"
    assert got.errors == [
        "start must come before the first audio frame",
        "start must come before the first audio frame",
    ]
    assert got.code == 1000


def test_bad_control_messages_get_an_error_and_the_session_goes_on(backend: Backend) -> None:
    f = fakes(["still here"], ["Good."])
    with (
        client(app_serving(lambda ws: f.pipeline()), backend) as c,
        c.websocket_connect("/ws") as ws,
    ):
        ws.send_text("this is not json")
        ws.send_text(json.dumps({"type": "dance"}))
        ws.send_text(json.dumps([1, 2]))
        ws.send_text(json.dumps({"type": "stop", "now": True}))
        send_audio(ws, utterance())
        stop(ws)
        got = drain(ws)
    errors = got.errors
    assert len(errors) == 4
    assert errors[0].startswith("control message is not valid JSON")
    assert errors[1].startswith("unknown control message type 'dance'")
    assert errors[2] == 'control message must be a JSON object with a "type" string'
    assert errors[3] == "invalid 'stop' message: now: Extra inputs are not permitted"
    assert all(e["stage"] == "input" and e["recoverable"] for e in got.of("error"))
    assert got.of("assistant")[0]["content"] == "Good."
    assert got.code == 1000


def test_wrong_shaped_audio_gets_an_error_and_is_dropped(backend: Backend) -> None:
    f = fakes(["fine"], ["OK."])
    with (
        client(app_serving(lambda ws: f.pipeline()), backend) as c,
        c.websocket_connect("/ws") as ws,
    ):
        ws.send_bytes(b"\x01\x02\x03")
        ws.send_bytes(wav_bytes(tone(100), FORMAT))
        send_audio(ws, utterance())
        stop(ws)
        got = drain(ws)
    assert len(got.errors) == 2
    assert "not a whole number of 2-byte PCM16 frames" in got.errors[0]
    assert "got a WAV file where raw PCM16 was expected" in got.errors[1]
    assert f.stt.received_bytes == len(utterance())
    assert got.of("user_turn")[0]["content"] == "fine"


@pytest.mark.parametrize("kind", ["binary", "text"])
def test_oversize_frame_closes_with_1009(backend: Backend, kind: str) -> None:
    f = fakes(["x"], ["y"])
    app = app_serving(lambda ws: f.pipeline(), max_frame_bytes=4096)
    with client(app, backend) as c, c.websocket_connect("/ws") as ws:
        assert json.loads(ws.receive_text())["type"] == "session"
        if kind == "binary":
            ws.send_bytes(bytes(4098))
        else:
            ws.send_text(json.dumps({"type": "text", "content": "x" * 5000}))
        got = drain(ws)
    assert got.code == 1009
    assert got.reason.endswith("over the 4096-byte limit")
    assert f.stt.received_bytes == 0
    assert f.all_closed


def test_typed_turns_in_text_mode(backend: Backend) -> None:
    f = fakes([], ["Hello to you.", "Fine."])
    c = client(app_serving(lambda ws: f.pipeline()), backend)
    with c.websocket_connect("/ws?mode=text") as ws:
        ws.send_bytes(tone(20))
        ws.send_text(json.dumps({"type": "text", "content": "hello"}))
        ws.send_text(json.dumps({"type": "text", "content": "how are you"}))
        stop(ws)
        ws.send_text(json.dumps({"type": "text", "content": "too late"}))
        got = drain(ws)
    assert [e["content"] for e in got.of("user_turn")] == ["hello", "how are you"]
    assert [e["content"] for e in got.of("assistant")] == ["Hello to you.", "Fine."]
    assert got.errors[0] == 'this session takes typed turns ({"type": "text"}), not audio'
    assert got.audio
    assert got.code == 1000
    # An audio session refuses typed turns.
    with c.websocket_connect("/ws") as ws:
        ws.send_text(json.dumps({"type": "text", "content": "hello"}))
        stop(ws)
        got = drain(ws)
    assert got.errors == ["typed turns need a session opened with ?mode=text"]


def test_audio_budget_ends_the_session_with_1008(backend: Backend) -> None:
    f = fakes(["x"], ["y"])
    app = app_serving(lambda ws: f.pipeline(), max_audio_bytes=FORMAT.bytes_for(100))
    with client(app, backend) as c, c.websocket_connect("/ws") as ws:
        send_audio(ws, silence(200))
        got = drain(ws)
    assert got.frames == ["session", "error"]
    (error,) = got.of("error")
    assert error["message"] == "the session used up its audio budget of 3200 bytes"
    assert error["recoverable"] is False
    assert (got.code, got.reason) == (1008, error["message"])
    assert f.stt.received_bytes == FORMAT.bytes_for(100)
    assert f.all_closed


def test_time_limit_ends_the_session_with_1008(backend: Backend) -> None:
    f = fakes(["x"], ["y"])
    app = app_serving(lambda ws: f.pipeline(), max_seconds=0.2)
    with client(app, backend) as c, c.websocket_connect("/ws") as ws:
        got = drain(ws)  # the client says nothing
    assert got.frames == ["session", "error"]
    assert got.errors == ["the session reached its 0.2-second limit"]
    assert (got.code, got.reason) == (1008, "the session reached its 0.2-second limit")
    assert f.all_closed


@pytest.mark.parametrize(
    ("query", "start", "message"),
    [
        ("sample_rate=fast", None, "sample_rate and channels must be integers"),
        ("channels=5", None, "channels must be 1 or 2, got 5"),
        ("", {"sample_rate": "fast"}, "invalid 'start' message: sample_rate: must be int, got str"),
        ("", {"channels": 5}, "channels must be 1 or 2, got 5"),
        ("", {"sample_rate": 1000}, "sample_rate must be between 8000 and 192000 Hz, got 1000"),
    ],
)
def test_bad_declared_format_ends_the_session_alike_from_query_or_start(
    backend: Backend, query: str, start: dict[str, Any] | None, message: str
) -> None:
    # Issue 10 item 8: one behaviour for both paths (docs/server.md): `session`, a fatal
    # `input` error, close 1008; the audio that follows could not be understood.
    f = fakes(["x"], ["y"])
    app = app_serving(lambda ws: f.pipeline())
    with client(app, backend) as c, c.websocket_connect(f"/ws?{query}") as ws:
        if start is not None:
            ws.send_text(json.dumps({"type": "start", **start}))
        got = drain(ws)
    assert got.frames == ["session", "error"]
    (error,) = got.of("error")
    assert error["message"].startswith(message)
    assert (error["stage"], error["recoverable"]) == ("input", False)
    assert (got.code, got.reason) == (1008, error["message"])
    assert f.stt.received_bytes == 0
    assert f.all_closed


class SlowToStart(Pipeline):
    """A pipeline whose first event takes a moment (providers connecting, a loaded loop)."""

    @asynccontextmanager
    async def run(self, audio: AsyncIterable[bytes]) -> AsyncIterator[Stream[Event]]:
        async with super().run(audio) as events:
            send, receive = anyio.create_memory_object_stream[Event](64)

            async def late() -> None:
                async with send:
                    await anyio.sleep(0.05)
                    async for event in events:
                        await send.send(event)

            async with anyio.create_task_group() as tg:
                tg.start_soon(late)
                with receive:
                    yield receive
                tg.cancel_scope.cancel()


def slow_pipeline(f: Fakes) -> Pipeline:
    return SlowToStart(stt=f.stt, llm=f.llm, tts=f.tts, input_format=FORMAT)


def test_session_is_first_even_when_the_client_speaks_first(backend: Backend) -> None:
    # Issue 10 item 6: a bad frame right after connecting got its error before `session`.
    f = fakes(["x"] * 5, ["y"] * 5)
    with client(app_serving(lambda ws: slow_pipeline(f)), backend) as c:
        for _ in range(5):
            with c.websocket_connect("/ws") as ws:
                ws.send_text("not json")
                ws.send_bytes(b"\x01")
                stop(ws)
                got = drain(ws)
            assert got.frames == ["session", "error", "error", "finish"]
            assert got.code == 1000


def test_nothing_follows_finish_when_input_comes_after_stop(backend: Backend) -> None:
    # Issue 10 item 6: audio after `stop` got `error` frames after `finish`.
    f = fakes(["x"] * 30, ["y"] * 30)
    with client(app_serving(lambda ws: f.pipeline()), backend) as c:
        for _ in range(30):
            with c.websocket_connect("/ws") as ws:
                send_audio(ws, utterance())
                stop(ws)
                send_audio(ws, silence(400))  # 20 frames nobody will hear
                ws.send_text("not json either")
                got = drain(ws)
            assert got.frames[0] == "session"
            assert got.frames[-1] == "finish"
            assert got.frames.count("finish") == 1
            for error in got.errors:  # those that came before `finish`, if any
                assert error == "audio after stop is ignored" or error.startswith("control")
            assert got.code == 1000
    assert f.all_closed


def test_deeply_nested_json_is_an_input_error_and_the_session_goes_on(backend: Backend) -> None:
    # Issue 10 item 7: this closed the session with 1011 and a RecursionError in the log.
    f = fakes(["still here"], ["Good."])
    with (
        client(app_serving(lambda ws: f.pipeline()), backend) as c,
        c.websocket_connect("/ws") as ws,
    ):
        ws.send_text("[" * 100000 + "]" * 100000)
        ws.send_text('{"type": "stop", "x": ' + "[" * 100000 + "]" * 100000 + "}")
        send_audio(ws, utterance())
        stop(ws)
        got = drain(ws)
    assert got.errors == ["control message is nested too deeply"] * 2
    assert all(e["stage"] == "input" and e["recoverable"] for e in got.of("error"))
    assert got.of("assistant")[0]["content"] == "Good."
    assert (got.code, got.reason) == (1000, "end_of_input")


def test_parse_json_names_the_problem() -> None:
    with pytest.raises(ProtocolError, match="nested too deeply"):
        parse_json("[" * 100000 + "]" * 100000)
    with pytest.raises(ProtocolError, match="not valid JSON"):
        parse_json("{")
    assert parse_json('{"a": [1]}') == {"a": [1]}


class ShoutingDialect(Dialect):
    """A dialect of the test's own: audio as base64 in JSON in; only the replies out,
    upper-cased, audio as base64 JSON; interruption as a `clear` message."""

    def __init__(self) -> None:
        self.closed = False
        self.started: list[str] = []

    async def start(self, link: Link) -> None:
        self.started.append(link.query.get("who", ""))

    async def on_frame(self, frame: str | bytes, link: Link) -> None:
        message = parse_json(frame)
        if message.get("event") == "media":
            await link.audio(base64.b64decode(message["payload"]))
        elif message.get("event") == "stop":
            await link.end_input()
        else:
            await link.error(f"unknown event {message.get('event')!r}")

    async def on_event(self, event: Event, link: Link) -> None:
        if isinstance(event, AudioChunk):
            await link.send(json.dumps({"media": base64.b64encode(event.audio).decode()}))
        elif isinstance(event, AssistantReply):
            await link.send(json.dumps({"said": event.content.upper()}))
        elif isinstance(event, Interrupted):
            await link.send(json.dumps({"event": "clear"}))
        elif isinstance(event, ErrorEvent):
            await link.send(json.dumps({"error": event.message}))

    async def aclose(self) -> None:
        self.closed = True


def test_a_dialect_shapes_both_directions(backend: Backend) -> None:
    f = fakes(["hello"], ["Hi there."])
    dialects: list[ShoutingDialect] = []

    def make() -> ShoutingDialect:
        dialects.append(ShoutingDialect())
        return dialects[-1]

    app = app_serving(lambda ws: f.pipeline(), dialect=make)
    with client(app, backend) as c, c.websocket_connect("/ws?who=me") as ws:
        ws.send_text(json.dumps({"event": "dance"}))
        for chunk in chunk_pcm(utterance(), FORMAT, 20):
            payload = base64.b64encode(chunk).decode()
            ws.send_text(json.dumps({"event": "media", "payload": payload}))
        ws.send_text(json.dumps({"event": "stop"}))
        got = [json.loads(text) for text in drain_text(ws)]
    assert got[0] == {"error": "unknown event 'dance'"}
    assert got[-1] == {"said": "HI THERE."}
    audio = b"".join(base64.b64decode(m["media"]) for m in got if "media" in m)
    assert len(audio) == f.tts.audio_bytes("Hi there.")
    assert f.stt.received_bytes == len(utterance())
    (dialect,) = dialects
    assert dialect.started == ["me"]
    assert dialect.closed
    assert f.all_closed


def drain_text(ws: WebSocketTestSession) -> list[str]:
    texts: list[str] = []
    while True:
        message = ws.receive()
        if message["type"] == "websocket.close":
            return texts
        texts.append(message["text"])


# -- a real socket: uvicorn on 127.0.0.1 and the websockets client -------------------


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # uvicorn runs on asyncio
async def test_conversation_over_a_real_socket(ws_layer: str) -> None:
    f = fakes(["what time is it"], ["It is noon."])
    app = app_serving(lambda ws: f.pipeline())
    async with serve_on_loopback(app, ws_layer) as address, loopback(address, "/ws") as ws:
        for chunk in chunk_pcm(utterance(), FORMAT, 20):
            await ws.send(chunk)
        await ws.send(json.dumps({"type": "stop"}))
        got = await adrain(ws)
    assert got.frames[0] == "session"
    assert got.frames[-3:] == ["assistant", "metrics", "finish"]
    assert got.of("user_turn")[0]["content"] == "what time is it"
    assert got.of("assistant")[0]["content"] == "It is noon."
    assert len(got.audio) == f.tts.audio_bytes("It is noon.")
    assert (got.code, got.reason) == (1000, "end_of_input")
    assert f.all_closed


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.parametrize("how", ["close", "drop"])
async def test_client_leaving_mid_reply_closes_the_pipeline_and_every_provider(
    how: str, ws_layer: str
) -> None:
    # The reply's LLM stream and TTS stream are both still open when the client goes.
    f = Fakes(
        FakeSTT(["tell me a story"]),
        FakeLLM(["Once upon a time. " * 20], token_delay=0.01),
        FakeTTS(chunk_delay=10),
    )
    ended = anyio.Event()

    async def endpoint(websocket: WebSocket) -> None:
        try:
            await serve(websocket, f.pipeline(realtime_lead=0.2))
        finally:
            ended.set()

    app = Starlette(routes=[WebSocketRoute("/ws", endpoint)])
    async with serve_on_loopback(app, ws_layer) as address:
        async with loopback(address, "/ws") as ws:
            for chunk in chunk_pcm(utterance(), FORMAT, 20):
                await ws.send(chunk)
            while not isinstance(await ws.recv(), bytes):
                pass  # until the reply's first audio
            assert f.llm.open_streams == 1 and f.tts.open_streams >= 1
            if how == "drop":
                ws.transport.abort()
        with anyio.fail_after(5):
            await ended.wait()
    assert f.all_closed
    assert f.llm.completed_streams == 0


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_one_session_failing_does_not_touch_another(ws_layer: str) -> None:
    good = fakes(["hello"], ["Hi."])

    class BrokenSTT(FakeSTT):
        async def transcribe(self, audio: Any, format: AudioFormat, emit: Emit) -> None:
            async for _ in audio:
                raise RuntimeError("the STT fell over")

    async def healthy(websocket: WebSocket) -> None:
        await serve(websocket, good.pipeline())

    async def failing(websocket: WebSocket) -> None:
        await serve(websocket, Pipeline(stt=BrokenSTT(), llm=FakeLLM(), tts=FakeTTS()))

    async def misconfigured(websocket: WebSocket) -> None:
        await serve(websocket, Pipeline(llm=FakeLLM()))  # no STT: run() raises

    app = Starlette(
        routes=[
            WebSocketRoute("/good", healthy),
            WebSocketRoute("/failing", failing),
            WebSocketRoute("/misconfigured", misconfigured),
        ]
    )
    async with serve_on_loopback(app, ws_layer) as address, loopback(address, "/good") as ws:
        assert json.loads(await ws.recv())["type"] == "session"
        # Two other sessions fail while this one is open.
        async with loopback(address, "/failing") as other:
            await other.send(tone(20))
            failed = await adrain(other)
        async with loopback(address, "/misconfigured") as other:
            crashed = await adrain(other)
        for chunk in chunk_pcm(utterance(), FORMAT, 20):
            await ws.send(chunk)
        await ws.send(json.dumps({"type": "stop"}))
        got = await adrain(ws)
    assert failed.of("error")[0]["message"] == "RuntimeError: the STT fell over"
    assert failed.of("finish")[0]["reason"] == "error"
    assert failed.code == 1000
    assert (crashed.code, crashed.reason) == (1011, "internal error")
    assert got.of("assistant")[0]["content"] == "Hi."
    assert (got.code, got.reason) == (1000, "end_of_input")
    assert good.all_closed


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_session_first_and_finish_last_over_a_real_socket(ws_layer: str) -> None:
    # Issue 10 item 6 on uvicorn: the client sends before it has read anything, and
    # keeps sending after `stop`.
    f = fakes(["x"] * 10, ["Fine."] * 10)
    app = app_serving(lambda ws: slow_pipeline(f))
    async with serve_on_loopback(app, ws_layer) as address:
        for _ in range(10):
            async with loopback(address, "/ws") as ws:
                await ws.send("not json")
                for chunk in chunk_pcm(utterance(), FORMAT, 20):
                    await ws.send(chunk)
                await ws.send(json.dumps({"type": "stop"}))
                with contextlib.suppress(ConnectionClosed):
                    for chunk in chunk_pcm(silence(2000), FORMAT, 20):
                        await ws.send(chunk)  # until the server closes
                        await anyio.sleep(0.002)
                got = await adrain(ws)
            assert got.frames[:2] == ["session", "error"]
            assert got.frames[-1] == "finish"
            assert got.frames.count("finish") == 1
            assert got.code == 1000
    assert f.all_closed


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_an_oversize_audio_frame_closes_with_1009_over_a_real_socket(ws_layer: str) -> None:
    # Over the limit, a frame never takes the picows layer's fast path to the pipeline.
    f = fakes(["x"], ["y"])
    app = app_serving(lambda ws: f.pipeline(), max_frame_bytes=4096)
    async with serve_on_loopback(app, ws_layer) as address, loopback(address, "/ws") as ws:
        assert json.loads(await ws.recv())["type"] == "session"
        await ws.send(bytes(640))
        await ws.send(bytes(4098))
        got = await adrain(ws)
    assert (got.code, got.reason) == (1009, "frame of 4098 bytes is over the 4096-byte limit")
    assert f.stt.received_bytes in (0, 640)  # the big one never reached the STT


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_audio_and_control_frames_reach_the_pipeline_in_order(ws_layer: str) -> None:
    # On the picows layer audio goes to the pipeline in the socket's callback while the
    # reader idles (the TAP extension); an `end_turn` between audio frames must still
    # land between them, and nothing after `stop`.
    heard: list[bytes] = []

    class RecordingSTT(FakeSTT):
        async def transcribe(self, audio: Any, format: AudioFormat, emit: Emit) -> None:
            async for chunk in audio:
                heard.append(chunk)

    f = Fakes(RecordingSTT([]), FakeLLM(), FakeTTS())
    app = app_serving(lambda ws: f.pipeline())
    before = [bytes([i]) * 640 for i in range(1, 31)]
    after = [bytes([i]) * 640 for i in range(31, 61)]
    async with serve_on_loopback(app, ws_layer) as address, loopback(address, "/ws") as ws:
        assert json.loads(await ws.recv())["type"] == "session"
        for chunk in before:
            await ws.send(chunk)
        await ws.send(json.dumps({"type": "end_turn"}))
        for chunk in after:
            await ws.send(chunk)
        await ws.send(json.dumps({"type": "stop"}))
        await ws.send(bytes([99]) * 640)  # after stop: never heard
        got = await adrain(ws)
    end_turn = bytes(FORMAT.bytes_for(END_TURN_SILENCE_MS))
    assert b"".join(heard) == b"".join(before) + end_turn + b"".join(after)
    assert (got.code, got.reason) == (1000, "end_of_input")


def never_reading_client(address: str, path: str, message: str) -> socket.socket:
    """A WebSocket client with a 4 KiB receive buffer that sends ``message`` and never reads
    again (blocking: run it in a thread)."""
    host, port = address.split(":")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: a small window
    sock.settimeout(10)
    sock.connect((host, int(port)))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        f"GET {path} HTTP/1.1\r\nHost: {address}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    response = b""
    while b"\r\n\r\n" not in response:
        response += sock.recv(1)  # byte by byte: not one byte of the frames after it
    assert response.startswith(b"HTTP/1.1 101"), response
    payload = message.encode()
    assert len(payload) < 126
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    sock.sendall(bytes([0x81, 0x80 | len(payload)]) + mask + masked)
    return sock


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.parametrize("limit", ["send_timeout", "max_seconds"])
async def test_a_client_that_stops_reading_does_not_hold_a_slot(limit: str, ws_layer: str) -> None:
    # Issue 10 item 5: two clients that ask for a long reply and never read filled a
    # two-session server for good. Each one's session must end (by the send timeout, or
    # by the session's time limit when sends may wait far longer) and free its slot.
    story = "Once upon a time there was a very long story. " * 400  # ~16 min of audio
    f = Fakes(FakeSTT(["hello"]), FakeLLM([story, story, "Hello."]), FakeTTS())
    options = (
        {"send_timeout": 0.5, "max_seconds": 3600.0}
        if limit == "send_timeout"
        else {"send_timeout": 3600.0, "max_seconds": 1.0}
    )
    active = 0
    ended = 0
    refused = 0

    async def endpoint(websocket: WebSocket) -> None:
        nonlocal active, ended, refused
        if active >= 2:
            refused += 1
            await websocket.accept()
            await websocket.close(1013, "server busy")
            return
        active += 1
        try:
            await serve(websocket, f.pipeline(), **options)  # type: ignore[arg-type]
        finally:
            active -= 1
            ended += 1

    app = Starlette(routes=[WebSocketRoute("/ws", endpoint)])
    async with serve_on_loopback(app, ws_layer) as address:
        turn = json.dumps({"type": "text", "content": "a story"})
        stuck = [
            await anyio.to_thread.run_sync(never_reading_client, address, "/ws?mode=text", turn)
            for _ in range(2)
        ]
        try:
            with anyio.fail_after(30):  # a hang guard: the sessions end long before
                while ended < 2:  # noqa: ASYNC110 - the endpoint has no event to wait on
                    await anyio.sleep(0.05)
            assert active == 0
            # The stuck clients are still connected, and a new client is served in full.
            async with loopback(address, "/ws") as ws:
                for chunk in chunk_pcm(utterance(), FORMAT, 20):
                    await ws.send(chunk)
                await ws.send(json.dumps({"type": "stop"}))
                got = await adrain(ws)
        finally:
            for sock in stuck:
                sock.close()
    assert refused == 0
    assert len(f.tts.texts) < 2 * 400 + 1  # the stories were cut short, not told to the end
    assert got.of("assistant")[0]["content"] == "Hello."
    assert (got.code, got.reason) == (1000, "end_of_input")
    assert f.all_closed


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("query", "as_is"),
    [({}, True), ({"sample_rate": "48000"}, False), ({"mode": "text"}, False)],
)
async def test_the_dialect_lets_the_server_take_pcm_as_is_only_when_it_is(
    query: dict[str, str], as_is: bool
) -> None:
    # PCM16 in the pipeline's format, heard as it came: the server may take every binary
    # frame itself from now on (no dialect call per frame). Not when it must be resampled,
    # nor on a text session (whose audio is an error, said by on_frame).
    async with anyio.create_task_group() as tg:
        link = FakeLink(tg, query=query)
        dialect = VoicepipeDialect()
        await dialect.open(link)
        await dialect.start(link)
        await dialect.on_frame(bytes(640), link)  # the first frame decides the codec
        taken = dialect.on_frame_nowait(bytes(640), link)
        assert (taken, link.as_is) == (as_is, as_is)
        await dialect.aclose()


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_the_audio_budget_ends_the_session_over_a_real_socket(ws_layer: str) -> None:
    # On the picows layer the frames go to the pipeline in the socket's callback: the one
    # past the budget must not, and the session ends as it does on the slow path.
    f = fakes(["x"], ["y"])
    app = app_serving(lambda ws: f.pipeline(), max_audio_bytes=FORMAT.bytes_for(100))
    async with serve_on_loopback(app, ws_layer) as address, loopback(address, "/ws") as ws:
        assert json.loads(await ws.recv())["type"] == "session"
        with contextlib.suppress(ConnectionClosed):
            for chunk in chunk_pcm(silence(200), FORMAT, 20):
                await ws.send(chunk)
        got = await adrain(ws)
    assert got.frames[-1] == "error"
    (error,) = got.of("error")
    assert error["message"] == "the session used up its audio budget of 3200 bytes"
    assert (got.code, got.reason) == (1008, error["message"])
    assert f.stt.received_bytes == FORMAT.bytes_for(100)


# -- the direct send path (TAP's `send`) ---------------------------------------------


class RecordingDialect(VoicepipeDialect):
    """voicepipe's dialect, noting every frame it hands the transport, in order."""

    def __init__(self, queued: list[str | bytes]) -> None:
        super().__init__()
        self.queued = queued

    async def on_event(self, event: Event, link: Link) -> None:
        await super().on_event(event, _NotingLink(link, self.queued))


class _NotingLink:
    def __init__(self, link: Link, queued: list[str | bytes]) -> None:
        self._link = link
        self._queued = queued

    def __getattr__(self, name: str) -> Any:
        return getattr(self._link, name)

    async def send(self, frame: str | bytes) -> None:
        self._queued.append(frame)
        await self._link.send(frame)


@pytest.mark.anyio
async def test_frames_written_at_once_keep_their_order_behind_queued_ones() -> None:
    # A layer offering TAP's `send` takes some frames at once and refuses others (its
    # buffer is full), and its ASGI send is slow: a frame may go out at once only with
    # nothing queued or being sent ahead of it, and nothing after the close.
    queued: list[str | bytes] = []
    wire: list[str | bytes | tuple[str, int]] = []
    direct = [0]
    inputs: list[dict[str, Any]] = [
        {"type": "websocket.connect"},
        *(
            {"type": "websocket.receive", "text": json.dumps({"type": "text", "content": c})}
            for c in ("hello", "how are you", "and then")
        ),
        {"type": "websocket.receive", "text": json.dumps({"type": "stop"})},
    ]
    closed = anyio.Event()

    async def receive() -> dict[str, Any]:
        if inputs:
            return inputs.pop(0)
        await closed.wait()
        return {"type": "websocket.disconnect", "code": 1000}

    async def send(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "websocket.accept":
            return
        for _ in range(3):
            await anyio.lowlevel.checkpoint()  # a slow socket: frames queue behind this one
        if message["type"] == "websocket.close":
            wire.append(("close", message["code"]))
            closed.set()
        else:
            wire.append(message["bytes"] if message.get("bytes") is not None else message["text"])

    def send_nowait(frame: str | bytes) -> bool:
        if len(wire) // 4 % 2:  # every other run of four frames: the buffer is full
            return False
        direct[0] += 1
        wire.append(frame)
        return True

    scope = {
        "type": "websocket",
        "path": "/ws",
        "query_string": b"mode=text",
        "headers": [],
        "subprotocols": [],
        "extensions": {TAP: {"set": lambda handler: None, "send": send_nowait}},
    }
    f = fakes([], ["Hello to you. Nice day.", "Fine. And you?", "Sure."], chunk_ms=20)
    await serve(
        WebSocket(scope, receive, send), f.pipeline(), dialect=lambda: RecordingDialect(queued)
    )
    assert wire[-1] == ("close", 1000)
    assert wire[:-1] == queued  # in order, all of them, and nothing after the close
    assert 0 < direct[0] < len(queued)  # both ways were taken
    assert json.loads(queued[-1])["type"] == "finish"
    assert f.all_closed


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_frames_go_out_without_an_asgi_message_on_the_picows_layer(ws_layer: str) -> None:
    # voicepipe serve's layer writes frames at once (TAP's `send`); uvicorn's own layer
    # gets each as an ASGI message, as before. The close is an ASGI message on both.
    asgi_sends: list[str] = []
    f = fakes(["hello"], ["Hello to you. Nice day."])
    inner = app_serving(lambda ws: f.pipeline())

    async def app(scope: Any, receive: Any, send: Any) -> None:
        async def counting(message: MutableMapping[str, Any]) -> None:
            if message["type"].startswith("websocket."):
                asgi_sends.append(message["type"])
            await send(message)

        await inner(scope, receive, counting)

    async with serve_on_loopback(app, ws_layer) as address, loopback(address, "/ws") as ws:
        for chunk in chunk_pcm(utterance(), FORMAT, 20):
            await ws.send(chunk)
        await ws.send(json.dumps({"type": "stop"}))
        got = await adrain(ws)
    assert got.frames[0] == "session" and got.frames[-1] == "finish"
    assert "assistant" in got.frames and got.audio
    assert (got.code, got.reason) == (1000, "end_of_input")
    sent = asgi_sends.count("websocket.send")
    assert asgi_sends[0] == "websocket.accept" and asgi_sends[-1] == "websocket.close"
    if ws_layer == PICOWS:
        assert sent == 0
    else:
        assert sent > len(got.events)  # every event, and the audio
    assert f.all_closed
