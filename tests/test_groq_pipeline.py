"""Issue 4's "done when": a two-turn voice conversation on GroqSTT + GroqLLM, end to end.

Everything Groq is respx: the transcription endpoint answers each uploaded
segment, the chat endpoint streams each reply in Groq's chunk shapes. The
user's "speech" is tone bursts; the second utterance is sent once the first
reply is over, so the test depends on order, never on time.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator

import anyio
import httpx
import pytest
import respx

from tests.support import silence
from tests.test_groq_llm import (
    BASE,
    CHAT,
    ScriptedBody,
    api_error,
    event_stream,
    reply_chunks,
    sse_events,
    sse_response,
)
from tests.test_groq_stt import TRANSCRIBE, transcription, uploaded_wavs
from tests.test_segmenter import MONO16, assert_durations, stream, tone
from voicepipe.events import (
    AssistantDelta,
    AssistantReply,
    AudioChunk,
    ErrorEvent,
    Event,
    Finish,
    Metrics,
    Session,
    SpeechStarted,
    TranscriptFinal,
    UserTurn,
)
from voicepipe.pipeline import Pipeline
from voicepipe.policies.conversation import ConversationPolicy
from voicepipe.providers.fake import FakeLLM, FakeTTS
from voicepipe.providers.groq import GroqLLM, GroqSTT
from voicepipe.segmenter import EnergyVAD

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.parametrize("anyio_backend", ["asyncio"]),  # the groq SDK is asyncio-bound
]

KEY = "gsk_test_pipeline_00112233"


@pytest.fixture
def groq_api() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=BASE, assert_all_called=True) as router:
        yield router


async def test_two_turn_conversation_on_groq(groq_api: respx.MockRouter) -> None:
    stt_route = groq_api.post(TRANSCRIBE).mock(
        side_effect=[transcription(" What's the capital of France?"), transcription(" Thanks!")]
    )
    chat_route = groq_api.post(CHAT).mock(
        side_effect=[
            sse_response(reply_chunks("Paris", " is the capital.", prompt=31, completion=6)),
            sse_response(reply_chunks("You're", " welcome.", prompt=52, completion=4)),
        ]
    )
    stt = GroqSTT(api_key=KEY, base_url=BASE, vad=EnergyVAD())
    llm = GroqLLM(api_key=KEY, base_url=BASE)
    pipeline = Pipeline(
        stt=stt,
        llm=llm,
        tts=FakeTTS(),
        policy=ConversationPolicy(system_prompt="You are terse."),
        input_format=MONO16,
    )
    replies_done = [anyio.Event(), anyio.Event()]

    async def microphone() -> AsyncIterator[bytes]:
        async for chunk in stream(silence(300) + tone(1200) + silence(900)):
            yield chunk
        await replies_done[0].wait()  # the user waits for the answer, then speaks again
        async for chunk in stream(tone(500) + silence(900)):
            yield chunk

    events: list[Event] = []
    async with pipeline.run(microphone()) as session_events:
        async for event in session_events:
            events.append(event)
            if isinstance(event, AssistantReply):
                replies_done[sum(isinstance(e, AssistantReply) for e in events) - 1].set()
    await llm.aclose()
    await stt.aclose()

    kinds = [e.type for e in events if not isinstance(e, AssistantDelta | AudioChunk)]
    turn = ["speech_started", "transcript_final", "user_turn", "assistant", "metrics"]
    assert kinds == ["session", *turn, *turn, "finish"]
    assert isinstance(events[0], Session)
    assert events[-1] == Finish(reason="end_of_input")
    assert [e for e in events if isinstance(e, SpeechStarted | TranscriptFinal | UserTurn)] == [
        SpeechStarted(),
        TranscriptFinal(content="What's the capital of France?"),
        UserTurn(content="What's the capital of France?"),
        SpeechStarted(),
        TranscriptFinal(content="Thanks!"),
        UserTurn(content="Thanks!"),
    ]
    replies = [e for e in events if isinstance(e, AssistantReply)]
    assert [(r.content, r.interrupted) for r in replies] == [
        ("Paris is the capital.", False),
        ("You're welcome.", False),
    ]
    assert any(isinstance(e, AudioChunk) for e in events)
    metrics = [e for e in events if isinstance(e, Metrics)]
    assert [(m.turn, m.prompt_tokens, m.completion_tokens) for m in metrics] == [
        (1, 31, 6),
        (2, 52, 4),
    ]

    # Groq got each utterance as a WAV (pre-roll + speech + post-roll) ...
    assert_durations([MONO16.duration(len(pcm)) for pcm, _ in uploaded_wavs(stt_route)], [1.6, 0.9])
    # ... and the second chat request carries the first exchange.
    second = json.loads(chat_route.calls.last.request.content)["messages"]
    assert second == [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "What's the capital of France?"},
        {"role": "assistant", "content": "Paris is the capital."},
        {"role": "user", "content": "Thanks!"},
    ]


async def test_barge_in_closes_the_groq_stream(groq_api: respx.MockRouter) -> None:
    groq_api.post(TRANSCRIBE).mock(
        side_effect=[transcription("Tell me a long story."), transcription("Stop.")]
    )
    stalled = ScriptedBody(
        sse_events(reply_chunks("Once upon a time."), done=False)[:2], then="stall"
    )
    groq_api.post(CHAT).mock(
        side_effect=[event_stream(stream=stalled), sse_response(reply_chunks("Okay."))]
    )
    stt = GroqSTT(api_key=KEY, base_url=BASE, vad=EnergyVAD())
    llm = GroqLLM(api_key=KEY, base_url=BASE)
    pipeline = Pipeline(stt=stt, llm=llm, tts=FakeTTS(), input_format=MONO16)

    async def microphone() -> AsyncIterator[bytes]:
        async for chunk in stream(silence(300) + tone(800) + silence(900)):
            yield chunk
        await stalled.stalled.wait()  # Groq is mid-reply: the user talks over it
        async for chunk in stream(tone(500) + silence(900)):
            yield chunk

    async with pipeline.run(microphone()) as session_events:
        events = [event async for event in session_events]
    await llm.aclose()
    await stt.aclose()

    assert stalled.closed
    kinds = [e.type for e in events if not isinstance(e, AssistantDelta | AudioChunk)]
    assert kinds[:5] == [
        "session",
        "speech_started",
        "transcript_final",
        "user_turn",
        "speech_started",
    ]
    assert "interrupted" in kinds
    replies = [e for e in events if isinstance(e, AssistantReply)]
    assert [r.interrupted for r in replies] == [True, False]
    assert replies[-1].content == "Okay."


async def test_a_rejected_llm_key_fails_the_turn_not_the_conversation(
    groq_api: respx.MockRouter,
) -> None:
    groq_api.post(TRANSCRIBE).mock(side_effect=[transcription("Hello?"), transcription("Again?")])
    rejected = api_error(401, "Invalid API Key", "invalid_api_key")
    groq_api.post(CHAT).mock(side_effect=[rejected, sse_response(reply_chunks("Hi."))])
    stt = GroqSTT(api_key=KEY, base_url=BASE, vad=EnergyVAD())
    llm = GroqLLM(api_key=KEY, base_url=BASE)
    pipeline = Pipeline(stt=stt, llm=llm, tts=FakeTTS(), input_format=MONO16)
    first_turn_done = anyio.Event()

    async def microphone() -> AsyncIterator[bytes]:
        async for chunk in stream(tone(400) + silence(900)):
            yield chunk
        await first_turn_done.wait()
        async for chunk in stream(tone(400) + silence(900)):
            yield chunk

    events: list[Event] = []
    async with pipeline.run(microphone()) as session_events:
        async for event in session_events:
            events.append(event)
            if isinstance(event, Metrics):
                first_turn_done.set()
    await llm.aclose()
    await stt.aclose()

    errors = [e for e in events if isinstance(e, ErrorEvent)]
    assert len(errors) == 1
    assert (errors[0].stage, errors[0].recoverable) == ("llm", True)
    assert "GROQ_API_KEY" in errors[0].message
    assert KEY not in errors[0].message
    assert [e.content for e in events if isinstance(e, AssistantReply)] == ["Hi."]
    assert events[-1] == Finish(reason="end_of_input")


async def test_a_rejected_stt_key_ends_the_session(groq_api: respx.MockRouter) -> None:
    body = {"error": {"message": "Invalid API Key", "type": "invalid_request_error"}}
    groq_api.post(TRANSCRIBE).mock(return_value=httpx.Response(401, json=body))
    stt = GroqSTT(api_key=KEY, base_url=BASE, vad=EnergyVAD())
    pipeline = Pipeline(stt=stt, llm=FakeLLM(), tts=FakeTTS(), input_format=MONO16)

    async def microphone() -> AsyncIterator[bytes]:
        async for chunk in stream(tone(400) + silence(900)):
            yield chunk
        await anyio.sleep_forever()  # the session must end without the input ending

    async with pipeline.run(microphone()) as session_events:
        events = [event async for event in session_events]
    await stt.aclose()

    assert events[-2:] == [
        ErrorEvent(
            stage="stt",
            message="Groq rejected the API key (HTTP 401): check GROQ_API_KEY or api_key=",
            recoverable=False,
        ),
        Finish(reason="error"),
    ]
