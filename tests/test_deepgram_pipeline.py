"""Issue 3's "done when": a two-turn conversation through Pipeline with both
Deepgram providers, against the loopback live fake and respx for /v1/speak."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import anyio
import httpx
import pytest
import respx

from tests.deepgram_fake import SDK_WARNING_FILTER, TEST_KEY, FakeDeepgram, results, speech_started
from voicepipe.audio import AudioFormat
from voicepipe.events import AssistantReply, AudioChunk, Event, Finish, Interrupted, UserTurn
from voicepipe.pipeline import Pipeline
from voicepipe.policies.conversation import ConversationPolicy
from voicepipe.providers.deepgram import DeepgramSettings, DeepgramSTT, DeepgramTTS
from voicepipe.providers.fake import FakeLLM

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.parametrize("anyio_backend", ["asyncio"]),
    pytest.mark.filterwarnings(SDK_WARNING_FILTER),
]

FMT = AudioFormat(16000, 1)
SPEAK = "http://127.0.0.1:9"  # respx answers; nothing is ever sent there


def spoken(text: str) -> bytes:
    """The fake "speech" respx returns for a sentence: its text, padded to whole samples."""
    data = text.encode()
    return data + b"\0" * (len(data) % 2)


def speak_route(request: httpx.Request) -> httpx.Response:
    text = json.loads(request.content)["text"]
    return httpx.Response(200, content=spoken(text))


async def test_two_turn_conversation_end_to_end() -> None:
    from deepgram import AsyncDeepgramClient, DeepgramClientEnvironment

    script = {
        2: [speech_started(), results("what's the")],
        3: [results("what's the weather", is_final=True, speech_final=True, duration=0.3)],
        5: [speech_started(0.3), results("thanks", is_final=True, start=0.3, duration=0.2)],
        "Finalize": [results("a lot", is_final=True, from_finalize=True, start=0.5)],
    }
    chunk = bytes(FMT.bytes_for(100))
    replied = anyio.Event()
    events: list[Event] = []

    async def microphone() -> AsyncIterator[bytes]:
        for _ in range(3):
            yield chunk
        await replied.wait()  # the user listens to the first reply, then speaks again
        for _ in range(3):
            yield chunk

    async with FakeDeepgram([script]) as fake:
        listen = AsyncDeepgramClient(api_key=TEST_KEY, environment=fake.environment())
        speak = AsyncDeepgramClient(
            api_key=TEST_KEY,
            environment=DeepgramClientEnvironment(
                base=SPEAK, production=fake.url, agent=fake.url, agent_rest=SPEAK
            ),
        )
        settings = DeepgramSettings(_env_file=None)
        pipeline = Pipeline(
            stt=DeepgramSTT(client=listen, settings=settings),
            llm=FakeLLM(replies=["It is sunny. Take a hat.", "You are welcome!"]),
            tts=DeepgramTTS(client=speak, settings=settings),
            policy=ConversationPolicy(),
            input_format=FMT,
        )
        with respx.mock(base_url=SPEAK) as mock, anyio.fail_after(20):
            route = mock.post("/v1/speak").mock(side_effect=speak_route)
            async with pipeline.run(microphone()) as stream:
                async for event in stream:
                    events.append(event)
                    if isinstance(event, AssistantReply):
                        replied.set()

    assert fake.problems == []
    assert fake.connections[0].log[-2:] == ["Finalize", "CloseStream"]
    assert [e.type for e in events if e.type == "error"] == []
    assert [(e.type, e.content) for e in events if isinstance(e, UserTurn | AssistantReply)] == [
        ("user_turn", "what's the weather"),
        ("assistant", "It is sunny. Take a hat."),
        ("user_turn", "thanks a lot"),
        ("assistant", "You are welcome!"),
    ]
    sentences = [json.loads(call.request.content)["text"] for call in route.calls]
    assert sentences == ["It is sunny.", "Take a hat.", "You are welcome!"]
    audio = b"".join(e.audio for e in events if isinstance(e, AudioChunk))
    assert audio == b"".join(spoken(s) for s in sentences)
    assert all(e.format == AudioFormat(24000, 1) for e in events if isinstance(e, AudioChunk))
    assert isinstance(events[-1], Finish)


class Stalled(httpx.AsyncByteStream):
    """A speak response that sends one chunk and then hangs, like a long sentence."""

    def __init__(self) -> None:
        self.closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield spoken("Once upon a time.")
        await anyio.sleep_forever()

    async def aclose(self) -> None:
        self.closed = True


async def test_barge_in_closes_the_deepgram_speak_stream() -> None:
    from deepgram import AsyncDeepgramClient, DeepgramClientEnvironment

    script = {
        2: [speech_started(), results("tell me a story", is_final=True, speech_final=True)],
        3: [speech_started(0.2)],
        4: [results("stop", is_final=True, speech_final=True, start=0.2, duration=0.2)],
    }
    stalled = Stalled()

    def speak_route(request: httpx.Request) -> httpx.Response:
        text = json.loads(request.content)["text"]
        if text.startswith("Once"):
            return httpx.Response(200, stream=stalled)
        return httpx.Response(200, content=spoken(text))

    chunk = bytes(FMT.bytes_for(100))
    heard = anyio.Event()
    events: list[Event] = []

    async def microphone() -> AsyncIterator[bytes]:
        for _ in range(2):
            yield chunk
        await heard.wait()  # the user hears the story start, then talks over it
        for _ in range(2):
            yield chunk

    async with FakeDeepgram([script]) as fake:
        env = DeepgramClientEnvironment(
            base=SPEAK, production=fake.url, agent=fake.url, agent_rest=SPEAK
        )
        client = AsyncDeepgramClient(api_key=TEST_KEY, environment=env)
        settings = DeepgramSettings(_env_file=None)
        pipeline = Pipeline(
            stt=DeepgramSTT(client=client, settings=settings),
            llm=FakeLLM(replies=["Once upon a time. There was a fox.", "Okay."]),
            tts=DeepgramTTS(client=client, settings=settings),
            policy=ConversationPolicy(),
            input_format=FMT,
        )
        with respx.mock(base_url=SPEAK) as mock, anyio.fail_after(20):
            mock.post("/v1/speak").mock(side_effect=speak_route)
            async with pipeline.run(microphone()) as stream:
                async for event in stream:
                    events.append(event)
                    if isinstance(event, AudioChunk):
                        heard.set()

    assert stalled.closed  # barge-in closed the HTTP stream of the sentence in progress
    assert [e.content for e in events if isinstance(e, Interrupted)] == ["Once upon a time."]
    assert [e.content for e in events if isinstance(e, UserTurn)] == ["tell me a story", "stop"]
    replies = [e for e in events if isinstance(e, AssistantReply)]
    assert [(e.content, e.interrupted) for e in replies] == [
        ("Once upon a time.", True),
        ("Okay.", False),
    ]
