"""GroqLLM through the real groq SDK against respx: no network, real chunk shapes.

The SSE bodies follow what Groq sends: a role-only first chunk, content
chunks (some with empty deltas), a final chunk with ``finish_reason`` and
the token counts in ``x_groq.usage``, then ``data: [DONE]``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import aclosing
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import respx
from pydantic import BaseModel

from voicepipe.errors import ProviderError
from voicepipe.providers.base import LLM, Message, Usage
from voicepipe.providers.groq import GroqLLM

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.parametrize("anyio_backend", ["asyncio"]),  # the groq SDK is asyncio-bound
]

KEY = "gsk_test_0123456789abcdef"
BASE = "https://api.groq.com"
CHAT = "/openai/v1/chat/completions"
MODEL = "llama-3.1-8b-instant"
HELLO = [Message("system", "Be brief."), Message("user", "Say hello.")]


# --- Groq's wire shapes ----------------------------------------------------------


def chunk(
    content: str | None = None,
    *,
    role: str | None = None,
    finish: str | None = None,
    x_groq: dict[str, Any] | None = None,
    usage: dict[str, int] | None = None,
) -> dict[str, Any]:
    """One ``chat.completion.chunk`` as Groq streams it."""
    delta: dict[str, Any] = {}
    if role is not None:
        delta["role"] = role
    if content is not None:
        delta["content"] = content
    body: dict[str, Any] = {
        "id": "chatcmpl-abc",
        "object": "chat.completion.chunk",
        "created": 1767225600,
        "model": MODEL,
        "system_fingerprint": "fp_test",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }
    if x_groq is not None:
        body["x_groq"] = x_groq
    if usage is not None:
        body["usage"] = usage
    return body


def groq_usage(prompt: int, completion: int) -> dict[str, Any]:
    return {
        "queue_time": 0.01,
        "prompt_tokens": prompt,
        "prompt_time": 0.002,
        "completion_tokens": completion,
        "completion_time": 0.01,
        "total_tokens": prompt + completion,
        "total_time": 0.012,
    }


def sse_events(chunks: list[dict[str, Any]], *, done: bool = True) -> list[bytes]:
    events = [f"data: {json.dumps(c)}\n\n".encode() for c in chunks]
    return [*events, b"data: [DONE]\n\n"] if done else events


def reply_chunks(*deltas: str, prompt: int = 12, completion: int = 5) -> list[dict[str, Any]]:
    """A whole streamed reply in Groq's shapes."""
    return [
        chunk("", role="assistant", x_groq={"id": "req_01"}),
        *(chunk(d) for d in deltas),
        chunk(finish="stop", x_groq={"id": "req_01", "usage": groq_usage(prompt, completion)}),
    ]


def sse_response(chunks: list[dict[str, Any]], **headers: str) -> httpx.Response:
    return httpx.Response(
        200,
        content=b"".join(sse_events(chunks)),
        headers={"content-type": "text/event-stream", **headers},
    )


def event_stream(
    *, content: bytes | None = None, stream: httpx.AsyncByteStream | None = None
) -> httpx.Response:
    """A 200 SSE response with a raw body (bytes, or a scripted stream)."""
    headers = {"content-type": "text/event-stream"}
    if stream is not None:
        return httpx.Response(200, stream=stream, headers=headers)
    return httpx.Response(200, content=content, headers=headers)


def completion(content: str, *, prompt: int = 30, completion_tokens: int = 8) -> httpx.Response:
    """A non-streaming ``chat.completion``."""
    return httpx.Response(
        200,
        json={
            "id": "chatcmpl-def",
            "object": "chat.completion",
            "created": 1767225600,
            "model": MODEL,
            "system_fingerprint": "fp_test",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": prompt,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt + completion_tokens,
            },
            "x_groq": {"id": "req_02"},
        },
    )


def api_error(status: int, message: str, code: str, **extra: Any) -> httpx.Response:
    body = {"error": {"message": message, "type": "invalid_request_error", "code": code, **extra}}
    return httpx.Response(status, json=body)


class ScriptedBody(httpx.AsyncByteStream):
    """A response body sent piece by piece; it can break, or stall until closed."""

    def __init__(self, parts: list[bytes], *, then: str = "end") -> None:
        self.parts = parts
        self.then = then  # "end", "break" or "stall"
        self.stalled = anyio.Event()
        self.closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for part in self.parts:
            yield part
        if self.then == "break":
            raise httpx.RemoteProtocolError("peer closed connection without sending complete body")
        if self.then == "stall":
            self.stalled.set()
            await anyio.sleep_forever()

    async def aclose(self) -> None:
        self.closed = True


# --- fixtures --------------------------------------------------------------------


@pytest.fixture
def groq_api() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=BASE, assert_all_called=False) as router:
        yield router


@pytest.fixture
async def llm() -> AsyncIterator[GroqLLM]:
    model = GroqLLM(api_key=KEY, base_url=BASE, max_retries=2)
    yield model
    await model.aclose()


async def collect(llm: GroqLLM, usage: Usage | None = None) -> list[str]:
    return [delta async for delta in llm.stream(HELLO, usage=usage)]


# --- stream ----------------------------------------------------------------------


async def test_stream_yields_deltas_and_fills_usage(
    llm: GroqLLM, groq_api: respx.MockRouter
) -> None:
    chunks = reply_chunks("Hel", "lo", "", " there.", prompt=21, completion=4)
    route = groq_api.post(CHAT).mock(return_value=sse_response(chunks))
    usage = Usage()

    assert await collect(llm, usage) == ["Hel", "lo", " there."]

    assert usage == Usage(prompt_tokens=21, completion_tokens=4)
    request = route.calls.last.request
    assert request.headers["authorization"] == f"Bearer {KEY}"
    body = json.loads(request.content)
    assert body["model"] == MODEL
    assert body["stream"] is True
    assert body["temperature"] == 0.7
    assert body["max_completion_tokens"] == 1024
    assert body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Say hello."},
    ]


async def test_stream_reads_openai_style_usage_too(
    llm: GroqLLM, groq_api: respx.MockRouter
) -> None:
    chunks = [
        chunk("", role="assistant"),
        chunk("Hi.", finish="stop"),
        {**chunk(), "choices": [], "usage": groq_usage(7, 2)},  # the include_usage chunk
    ]
    groq_api.post(CHAT).mock(return_value=sse_response(chunks))
    usage = Usage()

    assert await collect(llm, usage) == ["Hi."]
    assert usage == Usage(prompt_tokens=7, completion_tokens=2)


async def test_429_with_retry_after_is_retried(llm: GroqLLM, groq_api: respx.MockRouter) -> None:
    limited = api_error(429, "Rate limit reached", "rate_limit_exceeded")
    limited.headers["retry-after"] = "0.01"
    route = groq_api.post(CHAT).mock(side_effect=[limited, sse_response(reply_chunks("ok"))])

    assert await collect(llm) == ["ok"]
    assert route.call_count == 2
    assert route.calls.last.request.headers["x-stainless-retry-count"] == "1"


async def test_429_until_retries_run_out(groq_api: respx.MockRouter) -> None:
    limited = api_error(429, "Rate limit reached", "rate_limit_exceeded")
    limited.headers["retry-after"] = "0.01"
    route = groq_api.post(CHAT).mock(return_value=limited)
    llm = GroqLLM(api_key=KEY, base_url=BASE, max_retries=1)

    with pytest.raises(ProviderError) as info:
        await collect(llm)

    assert route.call_count == 2
    assert (info.value.stage, info.value.status, info.value.recoverable) == ("llm", 429, True)
    assert "rate limit" in info.value.message
    await llm.aclose()


async def test_401_names_the_variable_never_the_key(
    llm: GroqLLM, groq_api: respx.MockRouter
) -> None:
    route = groq_api.post(CHAT).mock(
        return_value=api_error(401, "Invalid API Key", "invalid_api_key")
    )

    with pytest.raises(ProviderError) as info:
        await collect(llm)

    error = info.value
    assert route.call_count == 1  # not retried
    assert (error.status, error.recoverable) == (401, True)  # the turn fails, not the session
    assert "GROQ_API_KEY" in error.message
    for text in (error.message, str(error), repr(error), repr(llm)):
        assert KEY not in text


async def test_timeout_then_success(
    groq_api: respx.MockRouter, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("groq._base_client.INITIAL_RETRY_DELAY", 0.001)
    route = groq_api.post(CHAT).mock(
        side_effect=[httpx.ReadTimeout("timed out"), sse_response(reply_chunks("late"))]
    )
    llm = GroqLLM(api_key=KEY, base_url=BASE, max_retries=1, timeout=0.5)

    assert await collect(llm) == ["late"]
    assert route.call_count == 2
    await llm.aclose()


async def test_timeout_after_retries(groq_api: respx.MockRouter) -> None:
    groq_api.post(CHAT).mock(side_effect=httpx.ReadTimeout("timed out"))
    llm = GroqLLM(api_key=KEY, base_url=BASE, max_retries=0, timeout=0.5)

    with pytest.raises(ProviderError) as info:
        await collect(llm)

    assert info.value.recoverable
    assert "did not answer within 0.5 s" in info.value.message
    await llm.aclose()


async def test_a_stream_cut_mid_way_fails_after_its_deltas(
    llm: GroqLLM, groq_api: respx.MockRouter
) -> None:
    parts = sse_events(reply_chunks("One.", " Two."), done=False)[:2]
    body = ScriptedBody(parts, then="break")
    groq_api.post(CHAT).mock(return_value=event_stream(stream=body))
    got: list[str] = []

    async def consume() -> None:
        async for delta in llm.stream(HELLO):
            got.append(delta)

    with pytest.raises(ProviderError) as info:
        await consume()

    assert got == ["One."]
    assert "broke mid-reply" in info.value.message
    assert info.value.recoverable
    assert body.closed


async def test_a_stream_ending_without_finish_is_an_error(
    llm: GroqLLM, groq_api: respx.MockRouter
) -> None:
    body = b"".join(sse_events(reply_chunks("Half"), done=False)[:2])  # no final chunk, no DONE
    groq_api.post(CHAT).mock(return_value=event_stream(content=body))

    with pytest.raises(ProviderError, match="ended before the reply was complete"):
        await collect(llm)


async def test_a_groq_error_event_mid_stream(llm: GroqLLM, groq_api: respx.MockRouter) -> None:
    error = {"error": {"message": "model overloaded", "type": "internal_server_error"}}
    parts = [*sse_events([chunk("", role="assistant")], done=False), sse_events([error])[0]]
    groq_api.post(CHAT).mock(return_value=event_stream(content=b"".join(parts)))

    with pytest.raises(ProviderError, match="model overloaded"):
        await collect(llm)


async def test_aclose_closes_the_http_response(llm: GroqLLM, groq_api: respx.MockRouter) -> None:
    body = ScriptedBody(sse_events(reply_chunks("First"), done=False)[:2], then="stall")
    groq_api.post(CHAT).mock(return_value=event_stream(stream=body))

    deltas = llm.stream(HELLO)
    assert await anext(deltas) == "First"
    await deltas.aclose()  # as on barge-in

    assert body.closed


async def test_cancelling_the_consumer_closes_the_http_response(
    llm: GroqLLM, groq_api: respx.MockRouter
) -> None:
    body = ScriptedBody(sse_events(reply_chunks("First"), done=False)[:2], then="stall")
    groq_api.post(CHAT).mock(return_value=event_stream(stream=body))
    got: list[str] = []

    async with anyio.create_task_group() as tg:

        async def consume() -> None:
            async with aclosing(llm.stream(HELLO)) as deltas:
                async for delta in deltas:
                    got.append(delta)

        tg.start_soon(consume)
        await body.stalled.wait()  # the consumer is blocked reading the next delta
        tg.cancel_scope.cancel()

    assert got == ["First"]
    assert body.closed


# --- complete_json ---------------------------------------------------------------


class Answer(BaseModel):
    name: str
    age: int


async def test_invalid_json_is_repaired_once(llm: GroqLLM, groq_api: respx.MockRouter) -> None:
    route = groq_api.post(CHAT).mock(
        side_effect=[
            completion('{"name": "Ada", "age": "about forty"', prompt=40, completion_tokens=9),
            completion('{"name": "Ada", "age": 41}', prompt=90, completion_tokens=7),
        ]
    )
    usage = Usage()

    answer = await llm.complete_json(HELLO, Answer, usage=usage)

    assert answer == Answer(name="Ada", age=41)
    assert usage == Usage(prompt_tokens=130, completion_tokens=16)
    first, second = (json.loads(call.request.content) for call in route.calls)
    assert first["response_format"] == {"type": "json_object"}
    assert first["temperature"] == 0.0
    assert "stream" not in first or first["stream"] is False
    assert "JSON schema" in first["messages"][0]["content"]
    assert '"age"' in first["messages"][0]["content"]
    assert second["messages"][:-2] == first["messages"]
    repair_request = second["messages"][-2:]
    assert repair_request[0] == {
        "role": "assistant",
        "content": '{"name": "Ada", "age": "about forty"',
    }
    assert repair_request[1]["role"] == "user"
    assert "not valid" in repair_request[1]["content"]


async def test_json_schema_response_format_where_supported(groq_api: respx.MockRouter) -> None:
    route = groq_api.post(CHAT).mock(return_value=completion('{"name": "Bo", "age": 7}'))
    llm = GroqLLM("openai/gpt-oss-20b", api_key=KEY, base_url=BASE)

    assert await llm.complete_json(HELLO, Answer) == Answer(name="Bo", age=7)

    request_format = json.loads(route.calls.last.request.content)["response_format"]
    assert request_format == {
        "type": "json_schema",
        "json_schema": {"name": "Answer", "schema": Answer.model_json_schema()},
    }
    await llm.aclose()


async def test_json_schema_refused_falls_back_to_json_object(groq_api: respx.MockRouter) -> None:
    refused = api_error(
        400, "This model does not support response format `json_schema`.", "invalid_request"
    )
    route = groq_api.post(CHAT).mock(side_effect=[refused, completion('{"name": "C", "age": 3}')])
    llm = GroqLLM(api_key=KEY, base_url=BASE, structured_output="json_schema")

    assert await llm.complete_json(HELLO, Answer) == Answer(name="C", age=3)

    assert json.loads(route.calls.last.request.content)["response_format"] == {
        "type": "json_object"
    }
    assert llm.structured_output == "json_object"
    await llm.aclose()


async def test_groq_json_validation_failure_counts_as_a_bad_reply(
    llm: GroqLLM, groq_api: respx.MockRouter
) -> None:
    failed = api_error(
        400,
        "Failed to generate JSON. Please adjust your prompt. "
        "See 'failed_generation' for more details.",
        "json_validate_failed",
        failed_generation="name: Ada",
    )
    route = groq_api.post(CHAT).mock(side_effect=[failed, completion('{"name": "Ada", "age": 41}')])

    assert await llm.complete_json(HELLO, Answer) == Answer(name="Ada", age=41)

    repair = json.loads(route.calls.last.request.content)["messages"][-2:]
    assert repair[0] == {"role": "assistant", "content": "name: Ada"}


async def test_two_invalid_replies_raise_a_clear_error(
    llm: GroqLLM, groq_api: respx.MockRouter
) -> None:
    route = groq_api.post(CHAT).mock(return_value=completion('{"name": "Ada"}'))

    with pytest.raises(ProviderError) as info:
        await llm.complete_json(HELLO, Answer)

    assert route.call_count == 2
    assert "no valid Answer after one repair attempt" in info.value.message
    assert "age: Field required" in info.value.message


# --- configuration ---------------------------------------------------------------


async def test_key_from_environment_and_dotenv(
    groq_api: respx.MockRouter, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    route = groq_api.post(CHAT).mock(return_value=sse_response(reply_chunks("hi")))
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GROQ_BASE_URL", raising=False)
    monkeypatch.delenv("GROQ_API_KEY", raising=False)

    with pytest.raises(ProviderError, match="GROQ_API_KEY") as info:
        GroqLLM()
    assert not info.value.recoverable

    (tmp_path / ".env").write_text("GROQ_API_KEY=gsk_from_dotenv\n")
    from_dotenv = GroqLLM()
    monkeypatch.setenv("GROQ_API_KEY", "gsk_from_env")
    from_env = GroqLLM()
    for llm, key in ((from_dotenv, "gsk_from_dotenv"), (from_env, "gsk_from_env")):
        assert await collect(llm) == ["hi"]
        assert route.calls.last.request.headers["authorization"] == f"Bearer {key}"
        await llm.aclose()


async def test_a_given_client_is_used_with_overrides(groq_api: respx.MockRouter) -> None:
    from groq import AsyncGroq

    route = groq_api.post(CHAT).mock(return_value=sse_response(reply_chunks("hi")))
    async with AsyncGroq(api_key=KEY, base_url=BASE, max_retries=5) as client:
        as_is = GroqLLM(client=client)
        tuned = GroqLLM("llama-3.3-70b-versatile", client=client, max_retries=0, max_tokens=None)
        assert as_is.client is client
        assert tuned.client.max_retries == 0
        assert await collect(tuned) == ["hi"]
        body = json.loads(route.calls.last.request.content)
        assert body["model"] == "llama-3.3-70b-versatile"
        assert "max_completion_tokens" not in body
        await as_is.aclose()  # not ours: stays open
        assert not client.is_closed()
    assert isinstance(as_is, LLM)


async def test_importing_voicepipe_never_imports_groq() -> None:
    code = (
        "import sys, voicepipe.providers, voicepipe.segmenter, voicepipe.providers.groq\n"
        "assert 'groq' not in sys.modules, 'groq imported'\n"
        "assert 'webrtcvad' not in sys.modules, 'webrtcvad imported'\n"
    )
    await anyio.run_process([sys.executable, "-c", code])


# --- malformed bodies (found by review) -------------------------------------------

MALFORMED_STREAMS = {
    "not-json": b"data: {not json\n\n",
    "too-deep": b"data: " + b"[" * 100_000 + b"]" * 100_000 + b"\n\n",
    "choice-without-delta": b'data: {"choices":[{"index":0}]}\n\ndata: [DONE]\n\n',
    "content-not-text": (
        b'data: {"choices":[{"index":0,"delta":{"content":5},"finish_reason":"stop"}]}\n\n'
        b"data: [DONE]\n\n"
    ),
}


@pytest.mark.parametrize("body", MALFORMED_STREAMS.values(), ids=MALFORMED_STREAMS.keys())
async def test_a_malformed_stream_is_a_provider_error_that_says_so(
    llm: GroqLLM, groq_api: respx.MockRouter, body: bytes
) -> None:
    # Each escaped as a bare JSONDecodeError or AttributeError, or put an int in the
    # reply's text, which the sentence splitter then failed on.
    groq_api.post(CHAT).mock(return_value=event_stream(content=body))
    with pytest.raises(ProviderError, match="Groq sent a reply voicepipe cannot read") as info:
        await collect(llm)
    assert info.value.recoverable


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(200, content=b"<html>", headers={"content-type": "application/json"}),
        httpx.Response(200, json={"choices": [{"index": 0}]}),
    ],
    ids=["not-json", "choice-without-message"],
)
async def test_a_malformed_json_reply_is_a_provider_error_that_says_so(
    llm: GroqLLM, groq_api: respx.MockRouter, response: httpx.Response
) -> None:
    groq_api.post(CHAT).mock(return_value=response)

    class Answer(BaseModel):
        value: int

    with pytest.raises(ProviderError, match="Groq sent a reply voicepipe cannot read"):
        await llm.complete_json(HELLO, Answer)


async def test_a_password_in_the_base_url_never_reaches_an_error_message() -> None:
    # Found by review: "could not reach Groq at https://user:s3cret@proxy..." went out
    # in the error event (to the client) and the log.
    base = "https://user:s3cret@api.groq.com"
    llm = GroqLLM(api_key=KEY, base_url=base, max_retries=0)
    with respx.mock(assert_all_called=False) as router:
        router.post(url__regex=r".*/chat/completions").mock(
            side_effect=httpx.ConnectError("refused")
        )
        with pytest.raises(ProviderError) as info:
            await collect(llm)
    await llm.aclose()
    assert "could not reach Groq at https://api.groq.com" in info.value.message
    assert "s3cret" not in str(info.value)
