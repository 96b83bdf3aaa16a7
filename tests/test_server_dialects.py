"""The example server's routes for other clients: the push-to-talk forms client's protocol
(base64 WebM clips) fills the intake form; Twilio calls are signed; /listen takes WebM."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import sqlite3
from pathlib import Path

import pytest
from starlette.websockets import WebSocketDisconnect

from tests.codec_support import browser_webm
from tests.support import silence, tone
from tests.test_server import clean_env, make_app
from tests.test_transport_websocket import Fakes, TestClient
from tests.test_twilio_call import Caller
from voicepipe.codecs.container import decode_clip
from voicepipe.providers.fake import FakeLLM, FakeSTT, FakeTTS

__all__ = ["clean_env"]  # the autouse fixture, reused

# The intake form reads e-mail and phone back: each gets a "yes".
PHONE = "four one five five five five zero one zero zero"
INTAKE_ANSWERS = ["I am 42", "ana at example dot com", "yes", PHONE, "yes"]
EXTRACTIONS = [
    json.dumps({"is_answer": True, "value": 42}),
    json.dumps({"is_answer": True, "value": "ana@example.com"}),
    json.dumps({"is_answer": True, "value": "415 555 0100"}),
]


def clip(pcm: bytes) -> str:
    """A recorded answer the way the forms client sends it."""
    data = base64.b64encode(browser_webm(pcm)).decode()
    return json.dumps({"audio": f"data:audio/webm;base64,{data}"})


def test_the_forms_client_fills_the_intake_form_with_clips(tmp_path: Path) -> None:
    f = Fakes(FakeSTT(INTAKE_ANSWERS), FakeLLM(EXTRACTIONS), FakeTTS())
    frames: list[str] = []
    with (
        TestClient(make_app(tmp_path, f)) as client,
        client.websocket_connect("/api/v1/ws/voice-agents?user_id=user-1&language=en") as ws,
    ):
        frames.append(ws.receive_text())  # the greeting: plain text, then it records
        for _ in INTAKE_ANSWERS:
            ws.send_text(clip(tone(600) + silence(100)))
            frames.append(ws.receive_text())
        closed = ws.receive()
    assert frames[0] == "Hello! I need three quick details from you. How old are you?"
    replies = [json.loads(frame) for frame in frames[1:]]
    assert all(set(r) <= {"message", "answers"} and r["message"] for r in replies)
    assert "answers" not in replies[0]
    assert replies[-1]["answers"] == {
        "age": 42,
        "email": "ana@example.com",
        "phone": "+14155550100",
    }
    assert closed["type"] == "websocket.close" and closed["code"] == 1000
    assert f.tts.texts == []  # the client speaks for itself: nothing was synthesized


def test_each_forms_client_connection_is_a_new_session(tmp_path: Path) -> None:
    f = Fakes(FakeSTT(INTAKE_ANSWERS * 2), FakeLLM(EXTRACTIONS * 2), FakeTTS())
    with TestClient(make_app(tmp_path, f)) as client:
        url = "/api/v1/ws/voice-agents?user_id=user-1&language=en"
        with client.websocket_connect(url) as ws:
            ws.receive_text()
            ws.send_text(clip(tone(600)))
            assert "age" not in json.loads(ws.receive_text()).get("answers", {})
        with client.websocket_connect(url) as ws:  # same user_id: not the same session
            assert ws.receive_text().startswith("Hello!")


def test_a_seed_page_stream_on_listen_gets_mp3(tmp_path: Path) -> None:
    f = Fakes(FakeSTT(["hello"]), FakeLLM(["Hi there."]), FakeTTS())
    encoded = browser_webm(tone(600) + silence(600))
    audio = b""
    types: list[str] = []
    with (
        TestClient(make_app(tmp_path, f)) as client,
        client.websocket_connect("/listen?input=webm&output=mp3") as ws,
    ):
        for start in range(0, len(encoded), 1200):  # 250 ms blobs, cut mid-element
            ws.send_bytes(encoded[start : start + 1200])
        while "assistant" not in types:
            message = ws.receive()
            if message.get("bytes") is not None:
                audio += message["bytes"]
            else:
                types.append(json.loads(message["text"])["type"])
    assert types[:1] == ["session"] and "transcript_final" in types
    assert audio[:2] == b"\xff\xf3"  # bare MP3 frames (24 kHz), as MediaSource('audio/mpeg') takes
    assert len(decode_clip(audio, 16000)) / 32000 == pytest.approx(0.45, abs=0.1)  # "Hi there."


def sign(token: str, url: str) -> str:
    return base64.b64encode(hmac.new(token.encode(), url.encode(), hashlib.sha1).digest()).decode()


@pytest.mark.parametrize(
    ("signature", "admitted"),
    [(lambda: sign("tw-token", "wss://voice.example.org/twilio"), True),
     (lambda: sign("other", "wss://voice.example.org/twilio"), False),
     (lambda: sign("tw-token", "wss://evil.example.org/twilio"), False),
     (lambda: None, False)],
)  # fmt: skip
def test_twilio_signature_is_checked_when_the_token_is_set(
    tmp_path: Path, signature: object, admitted: bool
) -> None:
    f = Fakes(FakeSTT([]), FakeLLM(["Hello."]), FakeTTS())
    app = make_app(
        tmp_path,
        f,
        twilio_auth_token="tw-token",
        twilio_public_url="wss://voice.example.org",
        access_token="for-browsers",  # Twilio cannot send it; its signature stands in
    )
    value = signature()  # type: ignore[operator]
    headers = {"x-twilio-signature": value} if value else {}
    with TestClient(app) as client:
        if not admitted:
            with pytest.raises(WebSocketDisconnect) as refused:  # refused before the upgrade
                client.websocket_connect("/twilio", headers=headers).__enter__()
            assert refused.value.code == 1008
            return
        with client.websocket_connect("/twilio", headers=headers) as ws:
            caller = Caller(ws)
            caller.start()
            caller.say(silence(100))
            assert caller.hang_up() == 1000


def test_twilio_form_route_runs_the_form(tmp_path: Path) -> None:
    f = Fakes(FakeSTT([]), FakeLLM(EXTRACTIONS), FakeTTS(ms_per_char=1))
    with (
        TestClient(make_app(tmp_path, f)) as client,
        client.websocket_connect("/twilio/forms/intake") as ws,
    ):
        caller = Caller(ws)
        caller.start()
        caller.receive_until("mark")
        caller.played()
        caller.dtmf("42#")  # keyed in while the first question plays
        caller.receive_until("mark")  # the reply to it
        assert caller.hang_up() == 1000
    assert f.llm.json_calls == []  # "42" needs no LLM: the form reads it
    with sqlite3.connect(tmp_path / "forms.db") as db:  # the digits reached the age field
        rows = db.execute("SELECT field, value FROM voicepipe_form_answers").fetchall()
    assert rows == [("age", "42")]


def test_clips_count_against_the_sessions_audio_budget(tmp_path: Path) -> None:
    # Found by review2: a clip was transcribed whole, never counted, so a forms client
    # could have any amount of audio transcribed (STT CPU, a vendor's bill) in one session.
    f = Fakes(FakeSTT(INTAKE_ANSWERS), FakeLLM(EXTRACTIONS), FakeTTS())
    app = make_app(tmp_path, f, max_audio_bytes=32000)  # one second of 16 kHz PCM16
    with (
        TestClient(app) as client,
        client.websocket_connect("/api/v1/ws/voice-agents?user_id=user-1&language=en") as ws,
    ):
        ws.receive_text()  # the greeting
        ws.send_text(clip(tone(600)))  # within the budget: answered
        assert json.loads(ws.receive_text())["message"]
        ws.send_text(clip(tone(600)))  # 1.2 s in all: over it, not transcribed
        with pytest.raises(WebSocketDisconnect) as closed:
            while True:
                ws.receive_text()
    assert closed.value.code == 1008
    assert f.stt.sessions == 1  # the second clip never reached the STT
