"""Adversarial review of the session core (channel, pipeline, speaker): each test here
reproduces a bug found by review, on asyncio and trio, asserting order and content."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Sequence
from typing import Any

import anyio
import pytest

from tests.support import of_type
from voicepipe import Pipeline
from voicepipe.audio import AudioFormat
from voicepipe.channel import Receiver, Sender
from voicepipe.errors import ProviderError
from voicepipe.events import AudioChunk, ErrorEvent, Event, Finish, Interrupted
from voicepipe.testing import assert_session_ok

pytestmark = pytest.mark.anyio


class GatedLLM:
    """Streams ``pieces``; before the piece at ``gate_at`` it waits for ``gate``."""

    def __init__(self, pieces: Sequence[str], gate_at: int) -> None:
        self.pieces = list(pieces)
        self.gate_at = gate_at
        self.gate = anyio.Event()

    async def stream(self, messages: Sequence[Any], **_: Any) -> AsyncIterator[str]:
        for index, piece in enumerate(self.pieces):
            if index == self.gate_at:
                await self.gate.wait()
            yield piece

    async def complete_json(self, messages: Sequence[Any], schema: Any, **_: Any) -> Any:
        raise NotImplementedError


class StallingTTS:
    """Each sentence's first chunk at once, then nothing until cancelled."""

    output_format = AudioFormat(16000, 1)

    async def synthesize(self, text: str) -> AsyncIterator[bytes]:
        yield bytes(640)
        await anyio.sleep_forever()


async def test_a_cut_while_the_next_sentence_is_being_queued_reports_no_error() -> None:
    # The reply's producer has just read a sentence (ready to run) when the caller
    # cuts in; the player, cancelled, closes the sentence queue before the producer
    # runs. The producer's send then found the queue closed and raised
    # BrokenResourceError without looking at its own cancellation (anyio's streams
    # check first), and the reply reported it as an LLM failure after `interrupted`.
    llm = GatedLLM(["One. ", "Two. ", "Three. "], gate_at=2)
    pipeline = Pipeline(llm=llm, tts=StallingTTS())
    events: list[Event] = []
    async with pipeline.run_text(["hello"]) as stream:
        async for event in stream:
            events.append(event)
            if isinstance(event, AudioChunk) and len(of_type(events, AudioChunk)) == 1:
                await anyio.wait_all_tasks_blocked()  # "Two." queued, the LLM waits
                llm.gate.set()  # the producer is about to queue "Three."
                await pipeline.inject_turn("stop")
    assert_session_ok(events)
    assert of_type(events, Interrupted)
    assert of_type(events, ErrorEvent) == []


async def test_a_cancelled_send_finds_out_it_is_cancelled_before_that_the_receiver_left() -> None:
    # anyio's streams check for cancellation before anything else; a cancelled
    # task must not take a closed queue for a failure of its own work.
    receiver: Receiver[int] = Receiver(math.inf)
    sender = Sender(receiver)
    receiver.close()
    with anyio.CancelScope() as scope:
        scope.cancel()
        await sender.send(1)
    assert scope.cancelled_caught
    with pytest.raises(anyio.BrokenResourceError):  # not cancelled: the receiver left
        await sender.send(2)


class HeldStream:
    """A reply stream that is not an async generator (no finalizer closes it): its
    ``pieces`` at once, then nothing until closed."""

    def __init__(self, pieces: Sequence[str]) -> None:
        self.pieces = list(pieces)
        self.closed = False

    def __aiter__(self) -> HeldStream:
        return self

    async def __anext__(self) -> str:
        if self.pieces:
            return self.pieces.pop(0)
        await anyio.sleep_forever()
        raise StopAsyncIteration

    async def aclose(self) -> None:
        self.closed = True


class HeldLLM:
    def __init__(self, pieces: Sequence[str]) -> None:
        self.pieces = pieces
        self.streams: list[HeldStream] = []

    def stream(self, messages: Sequence[Any], **_: Any) -> HeldStream:
        self.streams.append(HeldStream(self.pieces))
        return self.streams[-1]

    async def complete_json(self, messages: Sequence[Any], schema: Any, **_: Any) -> Any:
        raise NotImplementedError


async def test_a_cut_while_the_read_ahead_sentences_wait_for_room_closes_the_llm_stream() -> None:
    # The first piece of the reply holds four sentences: the player takes the first,
    # the producer queues the next ones, and waits for room with the third before it
    # has taken over the stream. A cut then cancelled it there and nobody closed the
    # LLM's stream (its HTTP response, for a real provider).
    llm = HeldLLM(["One. Two. Three. Four. "])
    pipeline = Pipeline(llm=llm, tts=StallingTTS())
    events: list[Event] = []
    async with pipeline.run_text(["hello"]) as stream:
        async for event in stream:
            events.append(event)
            if isinstance(event, AudioChunk) and len(of_type(events, AudioChunk)) == 1:
                await anyio.wait_all_tasks_blocked()
                await pipeline.inject_turn("stop")
    assert_session_ok(events)
    assert of_type(events, Interrupted)
    assert [s.closed for s in llm.streams] == [True]


class FailsOnCloseTTS:
    """A sentence's first chunk, then a stall; closing the stream raises (a reset socket)."""

    output_format = AudioFormat(16000, 1)

    def __init__(self) -> None:
        self.closed = 0

    async def synthesize(self, text: str) -> AsyncIterator[bytes]:
        try:
            yield bytes(640)
            await anyio.sleep_forever()
        finally:
            self.closed += 1
            raise ProviderError("tts", "connection reset while closing the stream")


async def test_a_tts_stream_that_fails_as_a_cut_closes_it_ends_nothing_but_the_reply() -> None:
    # Found by coreside: the sentence's chunk reader turned any TTS failure into an
    # `error` event it yielded, even while it was being closed, and an async generator
    # that yields while closing raises RuntimeError: the cut ended the whole session.
    tts = FailsOnCloseTTS()
    pipeline = Pipeline(llm=HeldLLM(["One. "]), tts=tts)
    events: list[Event] = []
    async with pipeline.run_text(["hello"]) as stream:
        async for event in stream:
            events.append(event)
            if isinstance(event, AudioChunk) and len(of_type(events, AudioChunk)) == 1:
                await anyio.wait_all_tasks_blocked()
                await pipeline.inject_turn("stop")
    assert tts.closed >= 1
    assert of_type(events, Interrupted)
    assert [e.message for e in of_type(events, ErrorEvent)] == []
    assert of_type(events, Finish)[-1].reason != "error"


class FailsOnCloseStreamingTTS(FailsOnCloseTTS):
    """Fifty 20 ms chunks as fast as they are read; closing the stream raises."""

    async def synthesize(self, text: str) -> AsyncIterator[bytes]:
        try:
            for _ in range(50):
                yield bytes(640)
        finally:
            self.closed += 1
            raise ProviderError("tts", "connection reset while closing the stream")


async def test_a_tts_stream_closed_between_chunks_that_fails_to_close_is_only_logged() -> None:
    # Paced playback: the reader waits between chunks while the TTS stream is parked at
    # its yield, so the cut closes it there (GeneratorExit), and its close raises.
    tts = FailsOnCloseStreamingTTS()
    pipeline = Pipeline(llm=HeldLLM(["One. "]), tts=tts, realtime_lead=0.0)
    events: list[Event] = []
    async with pipeline.run_text(["hello"]) as stream:
        async for event in stream:
            events.append(event)
            if isinstance(event, AudioChunk) and len(of_type(events, AudioChunk)) == 2:
                await pipeline.inject_turn("stop")
    assert tts.closed == 1
    assert of_type(events, Interrupted)
    assert len(of_type(events, AudioChunk)) < 50
    assert of_type(events, ErrorEvent) == []
    assert of_type(events, Finish)[-1].reason != "error"
