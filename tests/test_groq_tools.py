"""GroqLLM tool calls through the real groq SDK against respx: Groq's streamed shapes.

A call's first chunk has ``index``, ``id``, ``type``, the name and the first
piece of the arguments; later chunks only ``index`` and the next piece; a
parallel call has its own ``index``; the last chunk is an empty delta with
``finish_reason: "tool_calls"`` (``../shared/notes/groq-tools.md``).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import respx

from tests.support import of_type
from tests.test_groq_llm import BASE, CHAT, KEY, MODEL, api_error, groq_usage, sse_response
from tests.tool_support import assert_valid_history
from voicepipe import AssistantReply, ConversationPolicy, Message, Pipeline
from voicepipe.errors import ProviderError
from voicepipe.events import ToolCallEvent, ToolResultEvent
from voicepipe.providers.base import ToolCall, ToolSpec, Usage
from voicepipe.providers.groq import GroqLLM

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.parametrize("anyio_backend", ["asyncio"]),  # the groq SDK is asyncio-bound
]

WEATHER = ToolSpec(
    "get_weather",
    "Today's weather in a city.",
    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)
TIME = ToolSpec("get_time", "The time now.")
ASK = [Message("user", "Weather in Paris, and the time?")]


def c(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1763856000,
        "model": MODEL,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        **extra,
    }


def call_start(index: int, id: str, name: str, arguments: str) -> dict[str, Any]:
    function = {"name": name, "arguments": arguments}
    return {"tool_calls": [{"index": index, "id": id, "type": "function", "function": function}]}


def call_more(index: int, arguments: str) -> dict[str, Any]:
    return {"tool_calls": [{"index": index, "function": {"arguments": arguments}}]}


def last(finish: str = "tool_calls") -> dict[str, Any]:
    return c({}, finish, x_groq={"id": "req_1", "usage": groq_usage(40, 20)})


SPLIT_AND_PARALLEL = [
    c({"role": "assistant", **call_start(0, "call_1", "get_weather", '{"ci')}),
    c(call_more(0, 'ty": "Pa')),
    c(call_more(0, 'ris"}')),
    c(call_start(1, "call_2", "get_time", "{}")),
    last(),
]


@pytest.fixture
def groq_api() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=BASE, assert_all_called=False) as router:
        yield router


@pytest.fixture
async def llm() -> AsyncIterator[GroqLLM]:
    model = GroqLLM(api_key=KEY, base_url=BASE, max_retries=0)
    yield model
    await model.aclose()


async def collect(llm: GroqLLM, **options: Any) -> list[str | ToolCall]:
    return [item async for item in llm.stream(ASK, tools=[WEATHER, TIME], **options)]


async def test_split_arguments_and_parallel_calls_come_whole(
    llm: GroqLLM, groq_api: respx.MockRouter
) -> None:
    route = groq_api.post(CHAT).mock(return_value=sse_response(SPLIT_AND_PARALLEL))
    usage = Usage()
    items = await collect(llm, usage=usage)

    assert items == [
        ToolCall("get_weather", {"city": "Paris"}, id="call_1"),
        ToolCall("get_time", {}, id="call_2"),
    ]
    assert (usage.prompt_tokens, usage.completion_tokens) == (40, 20)
    body = json.loads(route.calls.last.request.content)
    assert body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Today's weather in a city.",
                "parameters": WEATHER.parameters,
            },
        },
        {
            "type": "function",
            "function": {
                "name": "get_time",
                "description": "The time now.",
                "parameters": {"type": "object", "properties": {}},
            },
        },
    ]
    assert "tool_choice" not in body and "parallel_tool_calls" not in body  # Groq's defaults


async def test_text_before_a_call_streams_first(llm: GroqLLM, groq_api: respx.MockRouter) -> None:
    chunks = [
        c({"role": "assistant", "content": "Let me"}),
        c({"content": " check."}),
        c(call_start(0, "call_9", "get_weather", '{"city": "Oslo"}')),  # a call in one chunk
        last(),
    ]
    groq_api.post(CHAT).mock(return_value=sse_response(chunks))
    assert await collect(llm) == [
        "Let me",
        " check.",
        ToolCall("get_weather", {"city": "Oslo"}, id="call_9"),
    ]


async def test_malformed_arguments_reach_the_runner_as_text(
    llm: GroqLLM, groq_api: respx.MockRouter
) -> None:
    chunks = [c(call_start(0, "call_1", "get_weather", '{"city": Paris}')), last()]
    groq_api.post(CHAT).mock(return_value=sse_response(chunks))
    assert await collect(llm) == [ToolCall("get_weather", '{"city": Paris}', id="call_1")]


async def test_calls_and_results_go_back_in_groqs_shape(
    llm: GroqLLM, groq_api: respx.MockRouter
) -> None:
    route = groq_api.post(CHAT).mock(
        return_value=sse_response([c({"content": "Sunny."}), last("stop")])
    )
    history = [
        *ASK,
        Message(
            "assistant",
            "",
            tool_calls=(
                ToolCall("get_weather", {"city": "Paris"}, id="call_1"),
                ToolCall("get_time", '{"bad', id="call_2"),
            ),
        ),
        Message("tool", "sunny, 22 C", tool_call_id="call_1"),
        Message("tool", "invalid arguments", tool_call_id="call_2"),
    ]
    assert [item async for item in llm.stream(history, tools=[WEATHER, TIME])] == ["Sunny."]
    sent = json.loads(route.calls.last.request.content)["messages"]
    assert sent[1:] == [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                },
                {
                    "id": "call_2",
                    "type": "function",
                    "function": {"name": "get_time", "arguments": '{"bad'},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny, 22 C"},
        {"role": "tool", "tool_call_id": "call_2", "content": "invalid arguments"},
    ]


async def test_parallel_tool_calls_option_is_sent(groq_api: respx.MockRouter) -> None:
    route = groq_api.post(CHAT).mock(
        return_value=sse_response([c({"content": "Hi"}), last("stop")])
    )
    model = GroqLLM(api_key=KEY, base_url=BASE, parallel_tool_calls=False)
    assert [item async for item in model.stream(ASK, tools=[TIME])] == ["Hi"]
    assert json.loads(route.calls.last.request.content)["parallel_tool_calls"] is False
    # Without tools nothing about tools is sent.
    assert [item async for item in model.stream(ASK)] == ["Hi"]
    body = json.loads(route.calls.last.request.content)
    assert "tools" not in body and "parallel_tool_calls" not in body
    await model.aclose()


async def test_a_malformed_generation_is_a_clear_error(
    llm: GroqLLM, groq_api: respx.MockRouter
) -> None:
    groq_api.post(CHAT).mock(
        return_value=api_error(
            400, "Failed to call a function.", "tool_use_failed", failed_generation="<fn"
        )
    )
    with pytest.raises(ProviderError, match="malformed tool call") as caught:
        await collect(llm)
    assert caught.value.recoverable


async def test_a_cut_stream_yields_no_half_call(llm: GroqLLM, groq_api: respx.MockRouter) -> None:
    groq_api.post(CHAT).mock(return_value=sse_response(SPLIT_AND_PARALLEL[:2]))
    items: list[str | ToolCall] = []
    with pytest.raises(ProviderError, match="ended before the reply was complete"):
        async for item in llm.stream(ASK, tools=[WEATHER]):
            items.append(item)
    assert items == []


async def test_the_whole_loop_over_groq(llm: GroqLLM, groq_api: respx.MockRouter) -> None:
    async def get_weather(city: str) -> str:
        """Today's weather in a city."""
        return {"Paris": "sunny, 22 C"}[city]

    def get_time() -> str:
        """The time now."""
        return "12:00"

    answer = [c({"content": "Sunny and 22 degrees; it is noon."}), last("stop")]
    route = groq_api.post(CHAT).mock(
        side_effect=[sse_response(SPLIT_AND_PARALLEL), sse_response(answer)]
    )
    policy = ConversationPolicy("SYS", tools=[get_weather, get_time])
    async with Pipeline(llm=llm, policy=policy).run_text([ASK[0].content]) as stream:
        events = [event async for event in stream]

    assert [(e.name, e.ok, e.content) for e in of_type(events, ToolResultEvent)] == [
        ("get_weather", True, "sunny, 22 C"),
        ("get_time", True, "12:00"),
    ]
    assert [e.arguments for e in of_type(events, ToolCallEvent)] == [{"city": "Paris"}, {}]
    assert of_type(events, AssistantReply)[0].content == "Sunny and 22 degrees; it is noon."
    second = json.loads(route.calls[1].request.content)["messages"]
    assert [m["role"] for m in second] == ["system", "user", "assistant", "tool", "tool"]
    assert [m["tool_call_id"] for m in second[3:]] == ["call_1", "call_2"]
    assert_valid_history(policy.history)


async def test_response_shapes_match_the_sdk_types() -> None:
    from groq.types.chat import ChatCompletionChunk

    for body in SPLIT_AND_PARALLEL:
        ChatCompletionChunk.model_validate(body)


async def test_arguments_nested_too_deeply_reach_the_runner_as_text(
    llm: GroqLLM, groq_api: respx.MockRouter
) -> None:
    # Found by review: json.loads raised RecursionError (not ValueError) out of stream().
    deep = "[" * 100_000 + "]" * 100_000
    chunks = [c(call_start(0, "call_1", "get_weather", deep)), last()]
    groq_api.post(CHAT).mock(return_value=sse_response(chunks))
    assert await collect(llm) == [ToolCall("get_weather", deep, id="call_1")]


async def test_calls_without_an_index_are_kept_in_the_models_order(
    llm: GroqLLM, groq_api: respx.MockRouter
) -> None:
    # Found by review: a piece without an index next to one with an index made
    # sorted() raise TypeError out of stream().
    no_index = {"tool_calls": [{"id": "call_2", "function": {"name": "get_time"}}]}
    chunks = [c(call_start(0, "call_1", "get_time", "{}")), c(no_index), last()]
    groq_api.post(CHAT).mock(return_value=sse_response(chunks))
    assert await collect(llm) == [
        ToolCall("get_time", {}, id="call_1"),
        ToolCall("get_time", {}, id="call_2"),
    ]
