"""voicepipe's dialect with codecs (input=/output=, detection, end_turn); the seed page's."""

from __future__ import annotations

import json
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import TypeVar

import anyio
import pytest

from tests.codec_support import browser_webm, firefox_ogg
from tests.dialect_support import FakeLink
from tests.support import tone
from voicepipe.audio import AudioFormat
from voicepipe.codecs.container import decode_clip
from voicepipe.events import (
    AssistantDelta,
    AssistantReply,
    AudioChunk,
    Interrupted,
    Metrics,
    TranscriptFinal,
)
from voicepipe.transports.dialects.seed import SeedDialect
from voicepipe.transports.dialects.voicepipe import END_TURN_SILENCE_MS, VoicepipeDialect

TTS = AudioFormat(24000)
D = TypeVar("D", bound=VoicepipeDialect)


@pytest.fixture(autouse=True)
def no_decoder_left() -> Iterator[None]:
    """A closed dialect leaves no decoding thread behind."""
    yield
    assert not [t for t in threading.enumerate() if t.name.startswith("voicepipe-decode")]


SPEECH = tone(700, hz=440)


@asynccontextmanager
async def started(dialect: D, link: FakeLink) -> AsyncIterator[D]:
    """``dialect`` opened and started on ``link``; closed (its decoder thread too) after."""
    await dialect.open(link)
    await dialect.start(link)
    try:
        yield dialect
    finally:
        await dialect.aclose()


def pieces(data: bytes, size: int = 700) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


@pytest.mark.anyio
@pytest.mark.parametrize("make", [browser_webm, firefox_ogg])
async def test_a_recorder_stream_on_plain_listen_is_detected_and_decoded(make: object) -> None:
    encoded = make(SPEECH)  # type: ignore[operator]
    async with anyio.create_task_group() as tg:
        link = FakeLink(tg)
        async with started(VoicepipeDialect(), link) as dialect:
            for piece in pieces(encoded):
                await dialect.on_frame(piece, link)
            await dialect.on_frame('{"type": "stop"}', link)
            assert bytes(link.pcm) == decode_clip(encoded, 16000)
            assert link.input_ended and not link.errors and not link.failed


@pytest.mark.anyio
async def test_pcm16_is_still_pcm16() -> None:
    async with anyio.create_task_group() as tg:
        link = FakeLink(tg)
        async with started(VoicepipeDialect(), link) as dialect:
            await dialect.on_frame(SPEECH[:640], link)
            await dialect.on_frame(b"\x01", link)
            # PCM in the pipeline's own format is passed on as it came: the pipeline
            # checks every chunk (once), and reports the odd byte as an input error
            # (test_transport_websocket.py::test_wrong_shaped_audio_gets_an_error_and_is_dropped).
            assert bytes(link.pcm) == SPEECH[:640] + b"\x01"
            assert not link.errors


@pytest.mark.anyio
async def test_garbage_declared_as_webm_ends_the_session_saying_what_was_expected() -> None:
    async with anyio.create_task_group() as tg:
        link = FakeLink(tg, query={"input": "webm"})
        async with started(VoicepipeDialect(), link) as dialect:
            await dialect.on_frame(b"hello, this is not a WebM stream", link)
            assert "expected a WebM stream (it starts with 1A 45 DF A3" in link.failed[0]
            await dialect.on_frame(b"more", link)  # ignored quietly once the stream is broken
            assert len(link.failed) == 1 and not link.pcm


@pytest.mark.anyio
@pytest.mark.parametrize("query", [{"input": "flac"}, {"output": "aac"}])
async def test_unknown_codecs_end_the_session(query: dict[str, str]) -> None:
    async with anyio.create_task_group() as tg:
        link = FakeLink(tg, query=query)
        async with started(VoicepipeDialect(), link):
            assert "use one of" in link.failed[0]


@pytest.mark.anyio
async def test_mp3_output_sends_frames_and_flushes_at_the_end_of_each_reply() -> None:
    async with anyio.create_task_group() as tg:
        link = FakeLink(tg, query={"output": "mp3"})
        async with started(VoicepipeDialect(), link) as dialect:
            reply = tone(500, TTS, hz=440)
            await dialect.on_event(AssistantDelta(content="Hi."), link)
            for piece in pieces(reply, 4800):
                await dialect.on_event(AudioChunk(audio=piece, format=TTS), link)
            before = b"".join(f for f in link.sent if isinstance(f, bytes))
            await dialect.on_event(AssistantReply(content="Hi."), link)
            audio = b"".join(f for f in link.sent if isinstance(f, bytes))
            assert len(audio) > len(before)  # the tail came out with the reply's end
            assert audio[:2] in (b"\xff\xf3", b"\xff\xf2", b"\xff\xe3")  # bare MPEG frames
            pcm = decode_clip(audio, 16000)
            assert len(pcm) / 32000 == pytest.approx(0.5, abs=0.15)
            assert json.loads(link.sent[-1]) == {
                "type": "assistant",
                "content": "Hi.",
                "interrupted": False,
            }


@pytest.mark.anyio
async def test_start_message_declares_codecs() -> None:
    async with anyio.create_task_group() as tg:
        link = FakeLink(tg)
        async with started(VoicepipeDialect(), link) as dialect:
            start = {"type": "start", "sample_rate": 16000, "input": "mulaw", "output": "mulaw"}
            await dialect.on_frame(json.dumps(start), link)
            await dialect.on_frame(b"\xff" * 160, link)  # 20 ms of μ-law silence
            assert len(link.pcm) == pytest.approx(640, abs=64)
            await dialect.on_event(AudioChunk(audio=tone(100, TTS), format=TTS), link)
            await dialect.on_event(AssistantReply(content="ok"), link)
            ulaw = b"".join(f for f in link.sent if isinstance(f, bytes))
            assert len(ulaw) == pytest.approx(800, abs=40)  # 100 ms of μ-law, tail flushed
            await dialect.on_frame(json.dumps(start), link)
            assert "before the first audio" in link.errors[0]


@pytest.mark.anyio
async def test_end_turn_hands_the_stt_silence_at_once() -> None:
    async with anyio.create_task_group() as tg:
        link = FakeLink(tg)
        async with started(VoicepipeDialect(), link) as dialect:
            await dialect.on_frame(SPEECH[:3200], link)
            await dialect.on_frame('{"type": "end_turn"}', link)
            assert bytes(link.pcm[3200:]) == bytes(AudioFormat().bytes_for(END_TURN_SILENCE_MS))


@pytest.mark.anyio
async def test_the_seed_dialect_takes_webm_and_gives_mp3_and_only_its_events() -> None:
    async with anyio.create_task_group() as tg:
        link = FakeLink(tg)
        async with started(SeedDialect(), link) as dialect:
            encoded = browser_webm(SPEECH)
            for piece in pieces(encoded):
                await dialect.on_frame(piece, link)
            assert bytes(link.pcm) == decode_clip(encoded, 16000)[: len(link.pcm)]
            await dialect.on_event(TranscriptFinal(content="hello"), link)
            await dialect.on_event(Metrics(turn=1), link)  # not one of the page's types
            await dialect.on_event(AudioChunk(audio=tone(300, TTS), format=TTS), link)
            await dialect.on_event(Interrupted(content=""), link)
            types = [json.loads(f)["type"] for f in link.sent if isinstance(f, str)]
            assert types == ["transcript_final", "interrupted"]


@pytest.mark.anyio
async def test_the_seed_dialect_says_when_the_header_blob_was_lost() -> None:
    async with anyio.create_task_group() as tg:
        link = FakeLink(tg)
        async with started(SeedDialect(), link) as dialect:
            encoded = browser_webm(SPEECH)
            await dialect.on_frame(encoded[300:900], link)  # the page dropped its first blob
            assert (
                "WebM header (1A 45 DF A3)" in link.failed[0]
                and "Reload the page" in link.failed[0]
            )


@pytest.mark.anyio
async def test_a_large_pcm_piece_at_another_rate_is_resampled_off_the_event_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A client that declares 8 kHz PCM may send a MiB in one frame: 26 ms of resampling,
    # a stall for every session on the loop. A frame-sized piece stays inline (cheap).
    from voicepipe.audio import Resampler
    from voicepipe.transports.codec_io import ClientAudio

    threads: list[threading.Thread] = []
    inner = Resampler.process

    def spy(self: Resampler, pcm: bytes) -> bytes:
        threads.append(threading.current_thread())
        return inner(self, pcm)

    monkeypatch.setattr(Resampler, "process", spy)
    audio = ClientAudio("pcm16", AudioFormat(16000), AudioFormat(8000))
    small = await audio.feed(tone(20, AudioFormat(8000)))
    large = await audio.feed(tone(40_000, AudioFormat(8000)))
    assert len(small) + len(large) + len(await audio.end()) == pytest.approx(
        AudioFormat(16000).bytes_for(40_020), abs=64
    )
    assert threads[0] is threading.main_thread()
    assert threads[1] is not threading.main_thread()
