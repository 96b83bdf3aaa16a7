"""The WebSocket transport: the wire protocol through Starlette's TestClient (on asyncio
and trio), and through a real ``websockets`` client against uvicorn on 127.0.0.1."""

from __future__ import annotations

import json
import socket
import warnings
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import anyio
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.types import ASGIApp
from starlette.websockets import WebSocket
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.support import FORMAT, silence, tone, utterance
from voicepipe import AudioFormat, Pipeline
from voicepipe.audio import chunk_pcm, wav_bytes
from voicepipe.providers.base import Emit
from voicepipe.providers.fake import FakeLLM, FakeSTT, FakeTTS
from voicepipe.transports.websocket import serve

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
async def serve_on_loopback(app: ASGIApp) -> AsyncIterator[str]:
    """Run ``app`` under uvicorn on a free port of 127.0.0.1; yield ``host:port``."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_config=None, lifespan="on", timeout_graceful_shutdown=5)
    server = uvicorn.Server(config)
    with sock:
        async with anyio.create_task_group() as tg:
            tg.start_soon(server.serve, [sock])
            with anyio.fail_after(10):
                while not server.started:  # noqa: ASYNC110 - uvicorn has no started event
                    await anyio.sleep(0.01)
            try:
                yield f"127.0.0.1:{port}"
            finally:
                server.should_exit = True


def loopback(address: str, path: str, **kwargs: Any) -> connect:
    """A ``websockets`` client for the loopback server (never through a proxy)."""
    return connect(f"ws://{address}{path}", proxy=None, compression=None, **kwargs)


Backend = Literal["asyncio", "trio"]


@pytest.fixture(params=["asyncio", "trio"])
def backend(request: pytest.FixtureRequest) -> Backend:
    name: Backend = request.param
    return name


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
        ws.send_text(json.dumps({"type": "start", "sample_rate": "fast"}))
        send_audio(ws, utterance())
        stop(ws)
        got = drain(ws)
    errors = got.errors
    assert len(errors) == 4
    assert errors[0].startswith("control message is not valid JSON")
    assert errors[1].startswith("unknown control message type 'dance'")
    assert errors[2] == 'control message must be a JSON object with a "type" string'
    assert errors[3] == "invalid 'start' message: sample_rate: must be int, got str"
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
    ("query", "message"),
    [
        ("sample_rate=fast", "sample_rate and channels must be integers"),
        ("channels=5", "channels must be 1 or 2, got 5"),
    ],
)
def test_bad_format_in_the_query_closes_with_1008(
    backend: Backend, query: str, message: str
) -> None:
    f = fakes([], [])
    app = app_serving(lambda ws: f.pipeline())
    with client(app, backend) as c, c.websocket_connect(f"/ws?{query}") as ws:
        got = drain(ws)
    assert got.frames == ["error"]
    assert got.errors[0].startswith(message)
    assert got.code == 1008


# -- a real socket: uvicorn on 127.0.0.1 and the websockets client -------------------


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # uvicorn runs on asyncio
async def test_conversation_over_a_real_socket() -> None:
    f = fakes(["what time is it"], ["It is noon."])
    app = app_serving(lambda ws: f.pipeline())
    async with serve_on_loopback(app) as address, loopback(address, "/ws") as ws:
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
async def test_client_leaving_mid_reply_closes_the_pipeline_and_every_provider(how: str) -> None:
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
    async with serve_on_loopback(app) as address:
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
async def test_one_session_failing_does_not_touch_another() -> None:
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
    async with serve_on_loopback(app) as address, loopback(address, "/good") as ws:
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
