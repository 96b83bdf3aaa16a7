"""What one tool round trip adds to a turn, beyond the tool's own time and the model's own time.

A turn with a tool call is: model call 1 (asks for the call), the tool, model
call 2 (the answer). The providers' own share is measured where it happens:
each model call from ``stream()`` to its last item, the tool inside itself.
The *added* latency is end of turn → first reply text, minus those, minus
the same figure for a plain turn (the pipeline's fixed cost, paid with or
without tools). It is what voicepipe's tool loop costs: building the schema
list, validating arguments, the task hop, the events, history bookkeeping.

Both providers are fakes with a real wait (``--ttft`` for each model call,
``--tool-ms`` in the tool), so the round trip suspends and resumes like a
real one. Text mode (no TTS), so the first reply delta is the end point.

Run: ``python benchmarks/bench_tools.py [--turns 200] [--backend asyncio|trio]``.
Figures are medians over turns; CPU time is per turn, whole process.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import AsyncGenerator, Sequence
from typing import Any

import anyio

from voicepipe import AssistantDelta, ConversationPolicy, Pipeline, UserTurn
from voicepipe.providers.base import Message, ToolCall, ToolSpec, Usage
from voicepipe.providers.fake import FakeLLM


class TimedLLM:
    """A FakeLLM whose own time per call (call → its first item) is recorded: the part of
    each call on the way to the first reply text (a call-only reply has one item)."""

    def __init__(self, llm: FakeLLM) -> None:
        self.llm = llm
        self.own: list[float] = []

    async def stream(
        self,
        messages: Sequence[Message],
        *,
        usage: Usage | None = None,
        tools: Sequence[ToolSpec] | None = None,
    ) -> AsyncGenerator[str | ToolCall, None]:
        started = time.perf_counter()
        first = True
        async for item in self.llm.stream(messages, usage=usage, tools=tools):
            if first:
                self.own.append(time.perf_counter() - started)
                first = False
            yield item

    async def complete_json(self, messages: Any, schema: Any, *, usage: Any = None) -> Any:
        raise NotImplementedError


async def measure(turns: int, ttft: float, tool_s: float, with_tool: bool) -> dict[str, float]:
    tool_own: list[float] = []

    async def get_weather(city: str) -> str:
        """Today's weather in a city."""
        started = time.perf_counter()
        await anyio.sleep(tool_s)
        tool_own.append(time.perf_counter() - started)
        return "sunny, 22 C"

    def reply(messages: Sequence[Message]) -> Any:
        if with_tool and messages[-1].role == "user":
            return ToolCall("get_weather", {"city": "Paris"})
        return "It is sunny in Paris."

    llm = TimedLLM(FakeLLM(reply, ttft=ttft))
    policy = ConversationPolicy(tools=[get_weather], memory_size=4, filler=None)
    pipeline = Pipeline(llm=llm, policy=policy)  # type: ignore[arg-type]
    waits: list[float] = []
    turn_started = 0.0
    first = True
    cpu = time.process_time()
    async with pipeline.run_text(["weather in Paris?"] * turns) as events:
        async for event in events:
            if isinstance(event, UserTurn):
                turn_started, first = time.perf_counter(), True
            elif isinstance(event, AssistantDelta) and first:
                waits.append(time.perf_counter() - turn_started)
                first = False
    cpu = time.process_time() - cpu
    calls_per_turn = 2 if with_tool else 1
    own = [
        sum(llm.own[i * calls_per_turn : (i + 1) * calls_per_turn])
        + (tool_own[i] if with_tool else 0)
        for i in range(turns)
    ]
    beyond = [w - o for w, o in zip(waits, own, strict=True)]
    return {
        "turn_ms": statistics.median(waits) * 1000,
        "providers_ms": statistics.median(own) * 1000,
        "beyond_providers_ms": statistics.median(beyond) * 1000,
        "cpu_per_turn_ms": cpu / turns * 1000,
    }


async def main(turns: int, ttft: float, tool_s: float) -> None:
    plain = await measure(turns, ttft, tool_s, with_tool=False)
    tool = await measure(turns, ttft, tool_s, with_tool=True)
    added = tool["beyond_providers_ms"] - plain["beyond_providers_ms"]
    added_cpu = tool["cpu_per_turn_ms"] - plain["cpu_per_turn_ms"]
    report = {
        "plain_turn": plain,
        "tool_turn": tool,
        "tool_round_trip_added_ms": round(added, 3),
        "tool_round_trip_added_cpu_ms": round(added_cpu, 3),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=200)
    parser.add_argument("--ttft", type=float, default=0.005, help="each model call's wait (s)")
    parser.add_argument("--tool-ms", type=float, default=5.0, help="the tool's own wait (ms)")
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    options = parser.parse_args()
    anyio.run(main, options.turns, options.ttft, options.tool_ms / 1000, backend=options.backend)
