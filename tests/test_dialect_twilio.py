"""Twilio Media Streams dialect: Twilio's documented messages, marks, clear, DTMF, signatures."""

from __future__ import annotations

import base64
import json

import anyio
import pytest

from tests.dialect_support import FakeLink
from tests.support import tone
from voicepipe.audio import AudioFormat
from voicepipe.codecs.g711 import pcm_to_mulaw
from voicepipe.events import AssistantDelta, AssistantReply, AudioChunk, Interrupted, Session
from voicepipe.transports.dialects.twilio import TwilioDialect, signature_valid

TTS = AudioFormat(24000)
SID = "MZ18ad3ab5a668481ce02b83e7395059f0"


def msg(event: str, **body: object) -> str:
    return json.dumps({"event": event, "sequenceNumber": "1", "streamSid": SID, **body})


START = msg(
    "start",
    start={
        "accountSid": "AC123",
        "streamSid": SID,
        "callSid": "CA123",
        "tracks": ["inbound"],
        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
        "customParameters": {"form": "intake"},
    },
)


def media(pcm8k: bytes, chunk: int = 1) -> str:
    payload = base64.b64encode(pcm_to_mulaw(pcm8k)).decode()
    return msg(
        "media",
        media={"track": "inbound", "chunk": str(chunk), "timestamp": "20", "payload": payload},
    )


async def opened(link: FakeLink) -> TwilioDialect:
    dialect = TwilioDialect()
    await dialect.open(link)
    await dialect.on_frame(json.dumps({"event": "connected", "protocol": "Call"}), link)
    await dialect.on_frame(START, link)
    return dialect


@pytest.mark.anyio
async def test_start_and_media_become_pcm_at_the_session_rate() -> None:
    async with anyio.create_task_group() as tg:
        link = FakeLink(tg)
        dialect = await opened(link)
        assert dialect.stream_sid == SID and dialect.call_sid == "CA123"
        assert dialect.parameters == {"form": "intake"}
        assert link.pipeline.playback is dialect
        for n in range(10):
            await dialect.on_frame(media(tone(20, AudioFormat(8000)), n + 1), link)
        await dialect.on_frame(msg("stop", stop={"accountSid": "AC123", "callSid": "CA123"}), link)
        assert link.input_ended
        assert len(link.pcm) == pytest.approx(200 * 32, abs=64)  # 200 ms at 16 kHz
        assert not link.errors and not link.failed


@pytest.mark.anyio
async def test_another_media_format_ends_the_call() -> None:
    async with anyio.create_task_group() as tg:
        link = FakeLink(tg)
        dialect = TwilioDialect()
        await dialect.open(link)
        start = json.loads(START)
        start["start"]["mediaFormat"]["sampleRate"] = 16000
        await dialect.on_frame(json.dumps(start), link)
        assert "expected mediaFormat" in link.failed[0]


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("frame", "error"),
    [
        (b"\x00\x01", "JSON text frames"),
        ("not json", "not valid JSON"),
        ('{"event": "wat"}', "unknown Media Streams event 'wat'"),
        ('{"event": "media"}', 'needs a "media" object'),
        ('{"event": "media", "media": {"payload": "%%%"}}', "not valid base64"),
    ],
)
async def test_bad_messages_are_input_errors(frame: str | bytes, error: str) -> None:
    async with anyio.create_task_group() as tg:
        link = FakeLink(tg)
        dialect = await opened(link)
        await dialect.on_frame(frame, link)
        assert error in link.errors[0]


@pytest.mark.anyio
async def test_replies_go_out_as_media_with_a_mark_after_each_sentence() -> None:
    async with anyio.create_task_group() as tg:
        link = FakeLink(tg)
        dialect = await opened(link)
        await dialect.on_event(Session(session_id="s", input_format=AudioFormat()), link)
        first, second = tone(200, TTS), tone(300, TTS)
        for event in (
            AssistantDelta(content="Hello there. "),
            AudioChunk(audio=first, format=TTS),
            AssistantDelta(content="What is your name?"),
            AudioChunk(audio=second, format=TTS),
            AssistantReply(content="Hello there. What is your name?"),
        ):
            await dialect.on_event(event, link)
        sent = link.json()
        # each sentence's audio, the encoder's tail of it, then its mark
        assert [m["event"] for m in sent] == ["media", "media", "mark", "media", "media", "mark"]
        assert all(m["streamSid"] == SID for m in sent)
        ulaw = b"".join(
            base64.b64decode(m["media"]["payload"]) for m in sent if m["event"] == "media"
        )
        assert len(ulaw) == pytest.approx(8000 * 0.5, abs=16)  # μ-law 8 kHz, no header
        assert [m["mark"]["name"] for m in sent if m["event"] == "mark"] == ["s1", "s2"]


@pytest.mark.anyio
async def test_audio_waits_for_the_stream_sid() -> None:
    async with anyio.create_task_group() as tg:
        link = FakeLink(tg)
        dialect = TwilioDialect()
        await dialect.open(link)
        tg.start_soon(dialect.on_event, AudioChunk(audio=tone(100, TTS), format=TTS), link)
        await anyio.wait_all_tasks_blocked()
        assert link.sent == []  # nothing can be addressed before `start`
        await dialect.on_frame(START, link)
        await anyio.wait_all_tasks_blocked()
        assert [m["event"] for m in link.json()] == ["media"]


async def speak(dialect: TwilioDialect, link: FakeLink, sentences: list[str]) -> int:
    """Send a reply's sentences (200 ms each); return the bytes of reply audio sent."""
    audio = tone(200, TTS)
    for text in sentences:
        await dialect.on_event(AssistantDelta(content=text), link)
        await dialect.on_event(AudioChunk(audio=audio, format=TTS), link)
    return len(audio) * len(sentences)


@pytest.mark.anyio
async def test_played_returns_when_the_marks_come_back_and_heard_follows_them() -> None:
    async with anyio.create_task_group() as tg:
        link = FakeLink(tg)
        dialect = await opened(link)
        spoken = ["One. ", "Two. ", "Three."]
        upto = await speak(dialect, link, spoken)
        done = anyio.Event()

        async def wait() -> None:
            await dialect.played(upto)
            done.set()

        tg.start_soon(wait)
        await anyio.wait_all_tasks_blocked()
        marks = [m["mark"]["name"] for m in link.json() if m["event"] == "mark"]
        assert marks == ["s1", "s2", "s3"]  # the last one sent by played() at the reply's end
        assert dialect.heard(spoken) == []
        await dialect.on_frame(msg("mark", mark={"name": "s1"}), link)
        assert dialect.heard(spoken) == ["One. "]
        await dialect.on_frame(msg("mark", mark={"name": "s2"}), link)
        await anyio.wait_all_tasks_blocked()
        assert not done.is_set()
        await dialect.on_frame(msg("mark", mark={"name": "s3"}), link)
        await anyio.wait_all_tasks_blocked()
        assert done.is_set()
        assert dialect.heard(spoken) == spoken


@pytest.mark.anyio
async def test_barge_in_clears_unplayed_audio_and_cleared_marks_do_not_count() -> None:
    async with anyio.create_task_group() as tg:
        link = FakeLink(tg)
        dialect = await opened(link)
        spoken = ["One. ", "Two. ", "Three."]
        upto = await speak(dialect, link, spoken)
        await dialect.on_frame(msg("mark", mark={"name": "s1"}), link)
        tg.start_soon(dialect.played, upto)
        await anyio.wait_all_tasks_blocked()
        assert dialect.heard(spoken) == ["One. "]
        await dialect.on_event(Interrupted(content="One. Two. Three."), link)
        assert link.json()[-1] == {"event": "clear", "streamSid": SID}
        # Twilio returns the pending marks after a clear: their audio was never played
        await dialect.on_frame(msg("mark", mark={"name": "s2"}), link)
        await dialect.on_frame(msg("mark", mark={"name": "s3"}), link)
        assert dialect.heard(spoken) == ["One. "]
        await anyio.wait_all_tasks_blocked()  # played() returned: nothing is waiting any more


@pytest.mark.anyio
async def test_no_clear_when_everything_was_played() -> None:
    async with anyio.create_task_group() as tg:
        link = FakeLink(tg)
        dialect = await opened(link)
        await speak(dialect, link, ["One."])
        await dialect.on_event(AssistantReply(content="One."), link)
        await dialect.on_frame(msg("mark", mark={"name": "s1"}), link)
        before = len(link.sent)
        await dialect.on_event(Interrupted(content=""), link)
        assert len(link.sent) == before


@pytest.mark.anyio
async def test_dtmf_digits_until_hash_are_one_typed_turn() -> None:
    async with anyio.create_task_group() as tg:
        link = FakeLink(tg)
        dialect = await opened(link)
        for digit in "42#":
            await dialect.on_frame(
                msg("dtmf", dtmf={"track": "inbound_track", "digit": digit}), link
            )
        assert link.pipeline.injected == ["42"]
        await dialect.on_frame(msg("dtmf", dtmf={"track": "inbound_track", "digit": "7"}), link)
        await dialect.on_frame(msg("stop", stop={}), link)  # the call ends: pending digits count
        assert link.pipeline.injected == ["42", "7"]


@pytest.mark.anyio
async def test_dtmf_digits_without_hash_are_sent_after_a_pause() -> None:
    async with anyio.create_task_group() as tg:
        link = FakeLink(tg)
        dialect = TwilioDialect(digit_timeout=0.01)
        await dialect.open(link)
        await dialect.on_frame(START, link)
        for digit in "12":
            await dialect.on_frame(
                msg("dtmf", dtmf={"track": "inbound_track", "digit": digit}), link
            )
        with anyio.fail_after(5):
            while not link.pipeline.injected:  # noqa: ASYNC110 - the timer is the point
                await anyio.sleep(0.01)
        assert link.pipeline.injected == ["12"]


def test_signature_of_twilios_worked_example_url() -> None:
    # From telephony notes: token 12345 signs wss://voice.example.org/twilio to this value.
    good = "n3SsJD42KMgeyNWaA9rg2m68JjU="
    assert signature_valid("12345", "wss://voice.example.org/twilio", good)
    assert signature_valid("12345", "wss://voice.example.org:443/twilio", good)
    assert not signature_valid("12345", "https://voice.example.org/twilio", good)
    assert not signature_valid("54321", "wss://voice.example.org/twilio", good)
    assert not signature_valid("12345", "wss://voice.example.org/twilio", None)
    assert not signature_valid("12345", "wss://voice.example.org/twilio", "x" + good[1:])


@pytest.mark.anyio
async def test_a_large_media_payload_is_decoded_off_the_event_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Twilio sends 160-byte frames (decoded inline: cheap); anything far bigger is
    # upsampled in a worker thread, not on the loop every session shares.
    import threading

    from voicepipe.codecs.g711 import G711Decoder

    threads: list[threading.Thread] = []
    inner = G711Decoder.decode

    def spy(self: G711Decoder, data: bytes) -> bytes:
        threads.append(threading.current_thread())
        return inner(self, data)

    monkeypatch.setattr(G711Decoder, "decode", spy)
    async with anyio.create_task_group() as tg:
        link = FakeLink(tg)
        dialect = await opened(link)
        await dialect.on_frame(media(tone(20, AudioFormat(8000)), 1), link)
        await dialect.on_frame(media(tone(20_000, AudioFormat(8000)), 2), link)
        assert len(link.pcm) == pytest.approx(AudioFormat(16000).bytes_for(20_020), abs=64)
        assert not link.errors and not link.failed
    assert threads[0] is threading.main_thread()
    assert threads[1] is not threading.main_thread()
