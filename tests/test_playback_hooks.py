"""The pipeline's hooks for clients that report playback (Twilio marks) and typed-in turns."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import anyio
import pytest

from tests.support import chunks, silence, tone, utterance
from voicepipe.events import AssistantReply, AudioChunk, Interrupted, UserTurn
from voicepipe.pipeline import Pipeline
from voicepipe.policies.conversation import ConversationPolicy
from voicepipe.providers.fake import FakeLLM, FakeSTT, FakeTTS

pytestmark = pytest.mark.anyio


class Player:
    """A client that has played the first ``n`` sentences of whatever reply is going out."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.waited: list[int] = []
        self.waiting = anyio.Event()
        self.release = anyio.Event()

    def heard(self, spoken: Sequence[str]) -> Sequence[str]:
        return list(spoken[: self.n])

    async def played(self, upto: int) -> None:
        self.waited.append(upto)
        self.waiting.set()
        await self.release.wait()


async def test_a_reply_lasts_until_played_and_history_keeps_what_was_heard() -> None:
    player = Player(1)
    llm = FakeLLM(["One. Two. Three.", "Okay."])
    stt = FakeSTT(["go", "stop"])
    pipeline = Pipeline(stt=stt, llm=llm, tts=FakeTTS(), policy=ConversationPolicy())
    pipeline.playback = player

    async def audio() -> AsyncIterator[bytes]:
        async for chunk in chunks(utterance()):
            yield chunk
        await player.waiting.wait()  # the whole reply is out; the client is still playing it
        async for chunk in chunks(tone(300) + silence(500)):  # the user talks over it
            yield chunk
        player.release.set()

    async with pipeline.run(audio()) as stream:
        events = [event async for event in stream]
    cut = next(i for i, e in enumerate(events) if isinstance(e, Interrupted))
    first_reply = sum(len(e.audio) for e in events[:cut] if isinstance(e, AudioChunk))
    assert player.waited[0] == first_reply > 0  # it waited for all of the reply's audio
    assert [e for e in events if isinstance(e, Interrupted)] == [Interrupted(content="One.")]
    replies = [e for e in events if isinstance(e, AssistantReply)]
    assert replies[0] == AssistantReply(content="One.", interrupted=True)
    assert [m.content for m in llm.calls[1] if m.role == "assistant"] == ["One."]


async def test_inject_turn_answers_a_typed_in_turn() -> None:
    llm = FakeLLM(["You pressed 42."])
    pipeline = Pipeline(stt=FakeSTT([]), llm=llm, tts=FakeTTS())
    with pytest.raises(RuntimeError, match="running session"):
        await pipeline.inject_turn("42")
    done = anyio.Event()

    async def audio() -> AsyncIterator[bytes]:
        yield silence(20)
        await pipeline.inject_turn("42")
        await done.wait()

    events = []
    async with pipeline.run(audio()) as stream:
        async for event in stream:
            events.append(event)
            if isinstance(event, AssistantReply):
                done.set()
    assert UserTurn(content="42") in events
    assert [m.content for m in llm.calls[0] if m.role == "user"] == ["42"]
