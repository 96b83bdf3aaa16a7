"""GroqSTT through the real groq SDK against respx: the transcription endpoint
gets a valid WAV of each segment, and the segmenter makes it a streaming STT."""

from __future__ import annotations

import email
import email.policy
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import respx

from tests.support import silence
from tests.test_segmenter import MONO16, assert_durations, stream, tone
from voicepipe.audio import AudioFormat, read_wav
from voicepipe.errors import ProviderError
from voicepipe.events import ErrorEvent, SpeechStarted, TranscriptFinal, UserTurn
from voicepipe.providers.base import STT, STTEvent
from voicepipe.providers.groq import GroqSTT
from voicepipe.segmenter import BatchSTT, EnergyVAD

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.parametrize("anyio_backend", ["asyncio"]),  # the groq SDK is asyncio-bound
]

KEY = "gsk_test_stt_fedcba9876543210"
BASE = "https://api.groq.com"
TRANSCRIBE = "/openai/v1/audio/transcriptions"


def transcription(text: str) -> httpx.Response:
    return httpx.Response(200, json={"text": text, "x_groq": {"id": "req_stt"}})


def form_fields(request: httpx.Request) -> dict[str, Any]:
    """The multipart form of a request: field name -> text, or (filename, type, bytes)."""
    head = f"Content-Type: {request.headers['content-type']}\r\n\r\n".encode()
    message = email.message_from_bytes(head + request.content, policy=email.policy.HTTP)
    fields: dict[str, Any] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        assert isinstance(name, str)
        assert isinstance(payload, bytes)
        filename = part.get_filename()
        if filename:
            fields[name] = (filename, part.get_content_type(), payload)
        else:
            fields[name] = payload.decode()
    return fields


def uploaded_wavs(route: respx.Route) -> list[tuple[bytes, AudioFormat]]:
    return [read_wav(form_fields(call.request)["file"][2]) for call in route.calls]


@pytest.fixture
def groq_api() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=BASE, assert_all_called=False) as router:
        yield router


@pytest.fixture
async def stt() -> AsyncIterator[GroqSTT]:
    groq_stt = GroqSTT(api_key=KEY, base_url=BASE, max_retries=0, vad=EnergyVAD())
    yield groq_stt
    await groq_stt.aclose()


async def run(stt: GroqSTT, audio: AsyncIterator[bytes]) -> list[STTEvent]:
    events: list[STTEvent] = []

    async def emit(event: STTEvent) -> None:
        events.append(event)

    await stt.transcribe(audio, MONO16, emit)
    return events


async def test_a_segment_goes_up_as_a_valid_wav(stt: GroqSTT, groq_api: respx.MockRouter) -> None:
    route = groq_api.post(TRANSCRIBE).mock(return_value=transcription(" Hello world. "))
    pcm = tone(700)

    assert await stt.transcribe_segment(pcm, MONO16) == "Hello world."

    request = route.calls.last.request
    assert request.headers["authorization"] == f"Bearer {KEY}"
    fields = form_fields(request)
    assert fields["model"] == "whisper-large-v3-turbo"
    assert fields["language"] == "en"
    assert fields["response_format"] == "json"
    assert float(fields["temperature"]) == 0.0
    assert "prompt" not in fields
    filename, content_type, wav = fields["file"]
    assert (filename, content_type) == ("segment.wav", "audio/wav")
    assert read_wav(wav) == (pcm, MONO16)


async def test_language_and_prompt_are_options(groq_api: respx.MockRouter) -> None:
    route = groq_api.post(TRANSCRIBE).mock(return_value=transcription("hola"))
    stt = GroqSTT("whisper-large-v3", api_key=KEY, language=None, prompt="Voicepipe, Groq.")

    assert await stt.transcribe_segment(tone(300), MONO16) == "hola"

    fields = form_fields(route.calls.last.request)
    assert fields["model"] == "whisper-large-v3"
    assert "language" not in fields
    assert fields["prompt"] == "Voicepipe, Groq."
    await stt.aclose()


async def test_streaming_turns_with_each_segment_uploaded(
    stt: GroqSTT, groq_api: respx.MockRouter
) -> None:
    route = groq_api.post(TRANSCRIBE).mock(
        side_effect=[transcription(" What time is it?"), transcription(" Thanks.")]
    )
    audio = silence(400) + tone(1200) + silence(900) + tone(500) + silence(900)

    events = await run(stt, stream(audio))

    # The audio is not paced, so the first upload may answer before or after
    # the second burst starts; each turn still follows its own speech.
    assert events[0] == SpeechStarted()
    assert events.count(SpeechStarted()) == 2
    assert [event for event in events if event != SpeechStarted()] == [
        TranscriptFinal(content="What time is it?"),
        UserTurn(content="What time is it?"),
        TranscriptFinal(content="Thanks."),
        UserTurn(content="Thanks."),
    ]
    second = events.index(SpeechStarted(), 1)
    assert second < events.index(TranscriptFinal(content="Thanks."))
    wavs = uploaded_wavs(route)
    assert all(fmt == MONO16 for _, fmt in wavs)
    assert_durations([MONO16.duration(len(pcm)) for pcm, _ in wavs], [1.6, 0.9])
    start = MONO16.bytes_for(200)  # 200 ms pre-roll before the burst at 400 ms
    assert wavs[0][0] == audio[start : start + len(wavs[0][0])]


async def test_a_server_error_loses_one_segment_only(
    stt: GroqSTT, groq_api: respx.MockRouter
) -> None:
    groq_api.post(TRANSCRIBE).mock(
        side_effect=[
            httpx.Response(500, json={"error": {"message": "internal error", "type": "api_error"}}),
            transcription("second try"),
        ]
    )
    audio = tone(400) + silence(800) + tone(400) + silence(800)

    events = await run(stt, stream(audio))

    # The failed request may answer before or after the second segment starts,
    # depending on scheduling; what matters is that only the first is lost.
    error = ErrorEvent(stage="stt", message="Groq returned HTTP 500: internal error")
    assert events.index(error) > 0
    assert [event for event in events if event != error] == [
        SpeechStarted(),
        SpeechStarted(),
        TranscriptFinal(content="second try"),
        UserTurn(content="second try"),
    ]


async def test_a_rejected_key_stops_transcription(stt: GroqSTT, groq_api: respx.MockRouter) -> None:
    body = {"error": {"message": "Invalid API Key", "type": "invalid_request_error"}}
    groq_api.post(TRANSCRIBE).mock(return_value=httpx.Response(401, json=body))

    with pytest.raises(ProviderError) as info:
        await run(stt, stream(tone(400) + silence(800) + tone(400) + silence(800)))

    error = info.value
    assert (error.stage, error.status, error.recoverable) == ("stt", 401, False)
    assert "GROQ_API_KEY" in error.message
    assert KEY not in str(error)


async def test_retries_then_transcribes(
    groq_api: respx.MockRouter, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("groq._base_client.INITIAL_RETRY_DELAY", 0.001)
    route = groq_api.post(TRANSCRIBE).mock(
        side_effect=[httpx.ConnectError("refused"), transcription("made it")]
    )
    stt = GroqSTT(api_key=KEY, max_retries=1)

    assert await stt.transcribe_segment(tone(300), MONO16) == "made it"
    assert route.call_count == 2
    await stt.aclose()


async def test_is_a_streaming_and_a_batch_stt(stt: GroqSTT) -> None:
    assert isinstance(stt, STT)
    assert isinstance(stt, BatchSTT)
    assert KEY not in repr(stt)
    assert stt.segmenter.format == MONO16


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(200, json={}),
        httpx.Response(200, json={"text": 5}),
        httpx.Response(200, content=b"<html>", headers={"content-type": "application/json"}),
        httpx.Response(
            200,
            content=b"[" * 100_000 + b"]" * 100_000,
            headers={"content-type": "application/json"},
        ),
    ],
    ids=["no-text", "text-not-a-string", "not-json", "too-deep"],
)
async def test_a_malformed_transcription_is_a_provider_error_that_says_so(
    stt: GroqSTT, groq_api: respx.MockRouter, response: httpx.Response
) -> None:
    # Found by review: each escaped as a bare AttributeError or JSONDecodeError.
    groq_api.post(TRANSCRIBE).mock(return_value=response)
    with pytest.raises(ProviderError, match="Groq sent a reply voicepipe cannot read") as info:
        await stt.transcribe_segment(silence(300), MONO16)
    assert info.value.recoverable
