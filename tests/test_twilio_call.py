"""A Twilio Media Streams call over a real socket, with a client written from Twilio's
documented message shapes: μ-law both ways, a mark after each sentence, `clear` on
barge-in, history as the marks say, DTMF digits into a form's number field."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket

from tests.support import silence, tone
from tests.test_forms_policy import Script
from tests.test_transport_websocket import Backend, TestClient
from tests.test_transport_websocket import backend as backend  # the fixture: both anyio backends
from voicepipe.audio import AudioFormat, chunk_pcm, resample
from voicepipe.codecs.g711 import mulaw_to_pcm, pcm_to_mulaw
from voicepipe.forms import load_form
from voicepipe.forms.sqlite import SQLiteFormStore
from voicepipe.pipeline import Pipeline
from voicepipe.policies.base import Policy
from voicepipe.policies.conversation import ConversationPolicy
from voicepipe.policies.form import FormPolicy
from voicepipe.providers.base import Message
from voicepipe.providers.fake import FakeLLM, FakeSTT, FakeTTS
from voicepipe.text import SentenceSplitter
from voicepipe.transports.dialects.twilio import TwilioDialect
from voicepipe.transports.websocket import serve

PHONE = AudioFormat(8000)
SID = "MZ0123456789abcdef0123456789abcdef"
INTAKE = load_form(Path(__file__).resolve().parent.parent / "examples" / "forms" / "intake.yaml")


def sentences(text: str) -> int:
    """How many sentences (so marks) the pipeline makes of ``text``."""
    splitter = SentenceSplitter()
    return sum(1 for piece in [*splitter.push(text), splitter.flush()] if piece.strip())


def app_for(pipeline: Pipeline, policy: Policy | None = None) -> Starlette:
    async def twilio(websocket: WebSocket) -> None:
        if policy is not None and hasattr(policy, "__aenter__"):
            async with policy:  # type: ignore[attr-defined]
                await serve(websocket, pipeline, dialect=TwilioDialect)
        else:
            await serve(websocket, pipeline, dialect=TwilioDialect)

    return Starlette(routes=[WebSocketRoute("/twilio", twilio)])


class Caller:
    """Twilio's side of a bidirectional Media Stream (shapes from its docs)."""

    def __init__(self, ws: Any) -> None:  # starlette's WebSocketTestSession
        self.ws = ws
        self.seq = 0
        self.chunk = 0
        self.audio = bytearray()  # μ-law played to the caller
        self.marks: list[str] = []  # received, not yet returned
        self.received: list[dict[str, Any]] = []

    def send(self, event: str, **body: Any) -> None:
        self.seq += 1
        message = {"event": event, "sequenceNumber": str(self.seq), "streamSid": SID, **body}
        if event == "connected":
            message = {"event": "connected", "protocol": "Call", "version": "1.0.0"}
        self.ws.send_text(json.dumps(message))

    def start(self) -> None:
        self.send("connected")
        self.send(
            "start",
            start={
                "accountSid": "AC0",
                "streamSid": SID,
                "callSid": "CA0",
                "tracks": ["inbound"],
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
                "customParameters": {},
            },
        )

    def say(self, pcm16k: bytes) -> None:
        """Speak 16 kHz PCM into the call as 20 ms μ-law media messages."""
        for piece in chunk_pcm(resample(pcm16k, AudioFormat(), PHONE), PHONE, 20):
            self.chunk += 1
            payload = base64.b64encode(pcm_to_mulaw(piece)).decode()
            ts = str(20 * (self.chunk - 1))
            self.send(
                "media",
                media={
                    "track": "inbound",
                    "chunk": str(self.chunk),
                    "timestamp": ts,
                    "payload": payload,
                },
            )

    def receive_until(self, event: str, count: int = 1) -> list[dict[str, Any]]:
        """Read messages until ``count`` of kind ``event`` came; return what came."""
        got: list[dict[str, Any]] = []
        while sum(m["event"] == event for m in got) < count:
            message = json.loads(self.ws.receive_text())
            assert message["streamSid"] == SID
            got.append(message)
            if message["event"] == "media":
                self.audio += base64.b64decode(message["media"]["payload"])
            elif message["event"] == "mark":
                self.marks.append(message["mark"]["name"])
        self.received += got
        return got

    def played(self, n: int | None = None) -> None:
        """Twilio returns marks as their audio finishes playing."""
        for name in self.marks[: n if n is not None else len(self.marks)]:
            self.send("mark", mark={"name": name})
        self.marks = self.marks[n:] if n is not None else []

    def hang_up(self) -> int:
        """Send ``stop`` (the call ended); return the server's close code."""
        self.send("stop", stop={"accountSid": "AC0", "callSid": "CA0"})
        while True:
            message = self.ws.receive()
            if message["type"] == "websocket.close":
                return int(message["code"])

    def dtmf(self, keys: str) -> None:
        for key in keys:
            self.send("dtmf", dtmf={"track": "inbound_track", "digit": key})


def test_a_call_with_barge_in_keeps_only_what_was_played(backend: Backend) -> None:
    llm = FakeLLM(["One. Two. Three.", "Sure."])
    policy = ConversationPolicy()
    pipeline = Pipeline(
        stt=FakeSTT(["tell me three things", "wait"]), llm=llm, tts=FakeTTS(), policy=policy
    )
    app = app_for(pipeline)
    with TestClient(app, backend=backend) as client, client.websocket_connect("/twilio") as ws:
        caller = Caller(ws)
        caller.start()
        caller.say(tone(400) + silence(400))
        got = caller.receive_until("mark", 3)  # a mark after each sentence
        kinds = [m["event"] for m in got]
        assert kinds.index("mark") > 0 and kinds[0] == "media"
        assert caller.marks == ["s1", "s2", "s3"]
        pcm = mulaw_to_pcm(bytes(caller.audio))  # μ-law 8 kHz, plays as speech
        # FakeTTS speaks 50 ms per character of each sentence ("One.", "Two.", "Three.")
        assert len(pcm) // 2 == pytest.approx(8000 * 0.05 * 14, abs=8)
        caller.played(1)  # the caller heard "One." ...
        caller.say(tone(300))  # ... and talks over the rest
        got = caller.receive_until("clear")
        assert got[-1] == {"event": "clear", "streamSid": SID}
        caller.played()  # Twilio returns the cleared marks: they do not count
        caller.say(silence(400))
        caller.receive_until("mark")
        caller.played()
        assert caller.hang_up() == 1000  # the server closes after the call ends
    second: list[Message] = llm.calls[1]
    assistant = [m.content for m in second if m.role == "assistant"]
    assert assistant == ["One."]  # the history holds what the marks said was played


def test_dtmf_digits_fill_a_number_field(backend: Backend, tmp_path: Path) -> None:
    script = Script()
    llm = FakeLLM(script)
    store = SQLiteFormStore(tmp_path / "forms.db")
    policy = FormPolicy(INTAKE, store=store, session_id="call-1")
    pipeline = Pipeline(stt=FakeSTT([]), llm=llm, tts=FakeTTS(ms_per_char=5), policy=policy)
    app = app_for(pipeline, policy)
    with TestClient(app, backend=backend) as client, client.websocket_connect("/twilio") as ws:
        caller = Caller(ws)
        caller.start()
        caller.receive_until("mark", sentences(f"{INTAKE.greeting} How old are you?"))
        caller.played()  # the caller heard the greeting and the first question
        caller.dtmf("42#")
        caller.receive_until("mark")
        caller.played()
        assert caller.hang_up() == 1000
    assert script.extraction_calls == []  # "42" needs no LLM: the form reads it
    assert policy.answers == {"age": 42}
