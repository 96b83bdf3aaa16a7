"""DeepgramTTS through the real deepgram-sdk, with respx answering POST /v1/speak."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import httpx
import pytest
import respx

from tests.deepgram_fake import SDK_WARNING_FILTER, TEST_KEY
from voicepipe.audio import AudioFormat
from voicepipe.errors import ProviderError
from voicepipe.providers.base import TTS
from voicepipe.providers.deepgram import DeepgramSettings, DeepgramTTS

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.parametrize("anyio_backend", ["asyncio"]),
    pytest.mark.filterwarnings(SDK_WARNING_FILTER),
]

BASE = "http://127.0.0.1:9"  # respx answers; nothing is ever sent there
AUDIO = bytes(range(256)) * 40  # 10 240 bytes of "PCM16"


def make_tts(**kwargs: Any) -> DeepgramTTS:
    from deepgram import AsyncDeepgramClient, DeepgramClientEnvironment

    ws = BASE.replace("http", "ws")
    env = DeepgramClientEnvironment(base=BASE, production=ws, agent=ws, agent_rest=BASE)
    client = AsyncDeepgramClient(api_key=TEST_KEY, environment=env)
    kwargs.setdefault("retry_backoff", 0.0)
    return DeepgramTTS(client=client, settings=DeepgramSettings(_env_file=None), **kwargs)


@pytest.fixture
def speak() -> Iterator[respx.Route]:
    with respx.mock(base_url=BASE, assert_all_called=False) as mock:
        yield mock.post("/v1/speak")


class Body(httpx.AsyncByteStream):
    """A response body sent in the given pieces, optionally failing or stalling after them."""

    def __init__(self, *pieces: bytes, then: Exception | None = None, stall: bool = False):
        self.pieces = pieces
        self.then = then
        self.stall = stall
        self.closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for piece in self.pieces:
            yield piece
        if self.then is not None:
            raise self.then
        if self.stall:
            await anyio.sleep_forever()

    async def aclose(self) -> None:
        self.closed = True


def pcm(body: Body | bytes = AUDIO) -> httpx.Response:
    stream = body if isinstance(body, Body) else Body(body)
    return httpx.Response(200, headers={"content-type": "audio/l16"}, stream=stream)


async def collect(tts: DeepgramTTS, text: str = "Hello there.") -> list[bytes]:
    with anyio.fail_after(10):  # a hang guard, not a timing assertion
        return [chunk async for chunk in tts.synthesize(text)]


async def test_streams_the_bytes_unchanged_with_the_right_request(speak: respx.Route) -> None:
    # Odd-sized pieces: chunks come out realigned to whole 16-bit samples.
    speak.return_value = pcm(Body(AUDIO[:1001], AUDIO[1001:1002], AUDIO[1002:5000], AUDIO[5000:]))
    tts = make_tts()
    assert isinstance(tts, TTS)
    assert tts.output_format == AudioFormat(24000, 1)
    out = await collect(tts, "Hello there.")
    assert b"".join(out) == AUDIO
    assert [len(chunk) for chunk in out] == [1000, 2, 3998, 5240]  # odd byte carried over
    request = speak.calls.last.request
    assert dict(request.url.params) == {
        "model": "aura-2-thalia-en",
        "encoding": "linear16",
        "container": "none",
        "sample_rate": "24000",
    }
    assert json.loads(request.content) == {"text": "Hello there."}
    assert request.headers["authorization"] == f"Token {TEST_KEY}"


async def test_options_reach_the_query(speak: respx.Route) -> None:
    speak.return_value = pcm()
    tts = make_tts(model="aura-2-apollo-en", sample_rate=16000, speed=1.2)
    assert tts.output_format == AudioFormat(16000, 1)
    await collect(tts)
    params = speak.calls.last.request.url.params
    assert (params["model"], params["sample_rate"], params["speed"]) == (
        "aura-2-apollo-en",
        "16000",
        "1.2",
    )


@pytest.mark.parametrize("status", [401, 403])
async def test_refused_key_is_fatal_and_not_retried(speak: respx.Route, status: int) -> None:
    speak.return_value = httpx.Response(status, json={"err_msg": "Invalid credentials."})
    with pytest.raises(ProviderError) as info:
        await collect(make_tts())
    assert speak.call_count == 1
    error = info.value
    assert (error.stage, error.status, error.recoverable) == ("tts", status, False)
    assert "DEEPGRAM_API_KEY" in error.message
    assert TEST_KEY not in str(error)


async def test_rate_limit_then_success_is_retried(speak: respx.Route) -> None:
    speak.side_effect = [
        httpx.Response(429, json={"err_msg": "Too many requests"}, headers={"retry-after": "0"}),
        pcm(),
    ]
    assert b"".join(await collect(make_tts())) == AUDIO
    assert speak.call_count == 2


async def test_server_errors_are_retried_then_reported(speak: respx.Route) -> None:
    speak.return_value = httpx.Response(500, json={"err_msg": "Internal error"})
    with pytest.raises(ProviderError) as info:
        await collect(make_tts(max_retries=2))
    assert speak.call_count == 3
    error = info.value
    assert (error.stage, error.status, error.recoverable) == ("tts", 500, True)
    assert "after 3 tries" in error.message
    assert "Internal error" in error.message


async def test_bad_request_is_not_retried(speak: respx.Route) -> None:
    speak.return_value = httpx.Response(400, json={"err_msg": "Unknown model"})
    with pytest.raises(ProviderError, match="Unknown model") as info:
        await collect(make_tts())
    assert speak.call_count == 1
    assert info.value.recoverable


async def test_connection_errors_are_retried(speak: respx.Route) -> None:
    speak.side_effect = [httpx.ConnectError("refused"), httpx.ConnectTimeout("slow"), pcm()]
    assert b"".join(await collect(make_tts())) == AUDIO
    assert speak.call_count == 3


async def test_persistent_connection_errors_are_reported(speak: respx.Route) -> None:
    speak.side_effect = httpx.ConnectError("refused")
    with pytest.raises(ProviderError, match="ConnectError") as info:
        await collect(make_tts(max_retries=1))
    assert speak.call_count == 2
    assert info.value.recoverable


async def test_failure_after_the_first_byte_is_not_retried(speak: respx.Route) -> None:
    speak.return_value = pcm(Body(AUDIO[:100], then=httpx.ReadError("connection reset")))
    stream = make_tts().synthesize("Hello.")
    assert await stream.__anext__() == AUDIO[:100]
    with pytest.raises(ProviderError, match="mid-stream") as info:
        await stream.__anext__()
    assert speak.call_count == 1
    assert info.value.recoverable


async def test_closing_the_iterator_closes_the_http_stream(speak: respx.Route) -> None:
    body = Body(AUDIO[:100], stall=True)
    speak.return_value = pcm(body)
    stream = make_tts().synthesize("A long sentence that takes a while.")
    with anyio.fail_after(10):
        assert await stream.__anext__() == AUDIO[:100]
        assert not body.closed
        await stream.aclose()
    assert body.closed


async def test_cancelling_the_consumer_closes_the_http_stream(speak: respx.Route) -> None:
    body = Body(AUDIO[:100], stall=True)
    speak.return_value = pcm(body)
    received: list[bytes] = []
    with anyio.fail_after(10), anyio.CancelScope() as barge_in:
        async for chunk in make_tts().synthesize("A long sentence."):
            received.append(chunk)
            barge_in.cancel()
    assert barge_in.cancelled_caught
    assert received == [AUDIO[:100]]
    assert body.closed


async def test_blank_text_makes_no_request(speak: respx.Route) -> None:
    assert await collect(make_tts(), "  ") == []
    assert speak.call_count == 0


async def test_unsupported_sample_rate_is_refused_up_front() -> None:
    with pytest.raises(ValueError, match="24000"):
        make_tts(sample_rate=22050)


async def test_runs_on_trio_too() -> None:
    """Unlike the live STT socket, the REST path (httpx) is backend-neutral."""

    async def on_trio() -> bytes:
        with respx.mock(base_url=BASE) as mock:
            mock.post("/v1/speak").side_effect = [httpx.Response(503), pcm()]
            return b"".join([chunk async for chunk in make_tts().synthesize("Hi.")])

    assert await anyio.to_thread.run_sync(lambda: anyio.run(on_trio, backend="trio")) == AUDIO
