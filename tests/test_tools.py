"""Declaring tools: schema from type hints, argument validation, results and errors."""

from __future__ import annotations

import json
import threading
from collections.abc import AsyncIterator, Sequence
from typing import Annotated, Literal

import anyio
import pytest
from pydantic import Field

from voicepipe.events import ToolCallEvent, ToolResultEvent, event_from_json, to_wire
from voicepipe.providers.base import Message, ToolCall, Usage
from voicepipe.providers.fake import FakeLLM
from voicepipe.tools import (
    Tool,
    ToolsNotSupportedError,
    as_tools,
    load_tools,
    require_tool_support,
    supports_tools,
    tool,
)


def book_table(
    name: str,
    people: Annotated[int, Field(ge=1, le=12, description="How many guests")],
    time: str = "19:00",
    seating: Literal["inside", "outside"] = "inside",
) -> str:
    """Book a table at the restaurant."""
    return f"booked for {name}, {people} people at {time}, {seating}"


async def get_weather(city: str) -> dict[str, object]:
    """Today's weather in a city."""
    return {"city": city, "sky": "sunny", "celsius": 22}


def test_schema_and_description_come_from_the_function() -> None:
    booking = tool(book_table)
    assert booking.name == "book_table"
    assert booking.description == "Book a table at the restaurant."
    schema = booking.parameters
    assert schema["type"] == "object"
    assert schema["required"] == ["name", "people"]
    assert schema["additionalProperties"] is False
    people = schema["properties"]["people"]
    assert people["type"] == "integer"
    assert (people["minimum"], people["maximum"]) == (1, 12)
    assert people["description"] == "How many guests"
    assert schema["properties"]["seating"]["enum"] == ["inside", "outside"]
    assert booking.spec.name == "book_table"
    assert booking.spec.parameters == schema


def test_decorator_forms_and_overrides() -> None:
    @tool(name="lookup", description="Find it.")
    def find(q: str) -> str:
        return q

    assert isinstance(find, Tool)
    assert (find.name, find.description) == ("lookup", "Find it.")


def untyped(city):  # type: ignore[no-untyped-def]
    return city


@pytest.mark.parametrize(
    ("fn", "message"),
    [
        (lambda x: x, "not valid"),  # "<lambda>" is no tool name
        (untyped, "'city' needs a type hint"),
        (tool, "cannot describe"),  # a Callable parameter has no JSON schema
    ],
)
def test_bad_functions_are_refused_with_the_fix(fn: object, message: str) -> None:
    with pytest.raises((ValueError, TypeError), match=message):
        Tool(fn)  # type: ignore[arg-type]


def test_star_arguments_are_refused() -> None:
    def anything(*args: int) -> None: ...

    with pytest.raises(TypeError, match=r"\*args"):
        Tool(anything)


def test_duplicate_names_are_refused() -> None:
    with pytest.raises(ValueError, match="two tools are named book_table"):
        as_tools([book_table, tool(book_table)])


@pytest.mark.anyio
async def test_valid_arguments_run_the_function_with_converted_types() -> None:
    result = await tool(book_table).run({"name": "Ana", "people": "4"})
    assert result.ok
    assert result.content == "booked for Ana, 4 people at 19:00, inside"
    weather = await tool(get_weather).run('{"city": "Paris"}')  # raw JSON text works too
    assert weather.ok
    assert json.loads(weather.content) == {"city": "Paris", "sky": "sunny", "celsius": 22}


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("arguments", "problem"),
    [
        ({"people": 2}, "name: Field required"),
        ({"name": "Ana", "people": 40}, "people: Input should be less than or equal to 12"),
        ({"name": "Ana", "people": 2, "room": "blue"}, "room: Extra inputs are not permitted"),
        ({"name": "Ana", "people": 2, "seating": "roof"}, "seating: Input should be"),
        ('{"name": "Ana", "peo', "arguments are not valid JSON"),
        ("[1, 2]", "arguments must be a JSON object"),
    ],
)
async def test_bad_arguments_never_reach_the_function(arguments: object, problem: str) -> None:
    ran: list[object] = []

    def book(
        name: str, people: Annotated[int, Field(le=12)], seating: Literal["inside"] = "inside"
    ) -> str:
        ran.append(name)
        return "ok"

    result = await tool(book, name="book_table").run(arguments)  # type: ignore[arg-type]
    assert not result.ok
    assert problem in result.content
    assert ran == []


@pytest.mark.anyio
async def test_an_exception_is_an_error_result() -> None:
    async def explode(city: str) -> str:
        raise RuntimeError(f"no station in {city}")

    result = await tool(explode).run({"city": "Atlantis"})
    assert (result.ok, result.content) == (False, "RuntimeError: no station in Atlantis")


@pytest.mark.anyio
async def test_a_slow_tool_times_out() -> None:
    async def forever(city: str) -> str:
        await anyio.sleep_forever()
        return ""

    result = await tool(forever).run({"city": "x"}, time_limit=0.01)
    assert (result.ok, result.content) == (False, "forever timed out after 0.01 s")


@pytest.mark.anyio
async def test_sync_tools_run_in_a_worker_thread() -> None:
    threads: list[threading.Thread] = []

    def where() -> str:
        threads.append(threading.current_thread())
        return "here"

    assert (await tool(where).run({})).content == "here"
    assert threads and threads[0] is not threading.main_thread()
    assert threads[0].daemon  # one left running never holds the process at exit


def test_load_tools_from_a_module_attribute() -> None:
    tools = load_tools("examples.tools.app:TOOLS")
    assert [t.name for t in tools] == ["get_weather", "book_table"]
    single = load_tools("tests.test_tools:book_table")
    assert [t.name for t in single] == ["book_table"]
    with pytest.raises(ValueError, match="must look like"):
        load_tools("examples.tools.app")
    with pytest.raises(ValueError, match="has no attribute"):
        load_tools("examples.tools.app:NOPE")
    with pytest.raises(ValueError, match="cannot import"):
        load_tools("no_such_module_here:x")


class TextOnlyLLM:
    """An LLM written before tools existed: it still is an LLM."""

    async def stream(
        self, messages: Sequence[Message], *, usage: Usage | None = None
    ) -> AsyncIterator[str]:
        yield "hi"

    async def complete_json(
        self, messages: object, schema: object, *, usage: object = None
    ) -> object:
        raise NotImplementedError


def test_tool_support_is_detected_from_the_signature() -> None:
    assert supports_tools(FakeLLM())
    assert not supports_tools(TextOnlyLLM())
    with pytest.raises(ToolsNotSupportedError, match=r"TextOnlyLLM.stream\(\) takes no tools="):
        require_tool_support(TextOnlyLLM())


def test_tool_events_on_the_wire() -> None:
    call = ToolCallEvent(id="call_1", name="get_weather", arguments={"city": "Paris"})
    result = ToolResultEvent(id="call_1", name="get_weather", ok=True, content="sunny")
    assert json.loads(to_wire(call)) == {
        "type": "tool_call",
        "id": "call_1",
        "name": "get_weather",
        "arguments": {"city": "Paris"},
    }
    assert json.loads(to_wire(result)) == {
        "type": "tool_result",
        "id": "call_1",
        "name": "get_weather",
        "ok": True,
        "content": "sunny",
    }
    assert event_from_json(call.to_json()) == call
    assert event_from_json(result.to_json()) == result


@pytest.mark.anyio
async def test_fake_llm_scripts_tool_calls_and_records_the_tools() -> None:
    llm = FakeLLM([["Let me look.", ToolCall("a", {"x": 1}), ToolCall("b", id="mine")]])
    items = [
        item async for item in llm.stream([Message("user", "hi")], tools=[tool(book_table).spec])
    ]
    assert items == [
        "Let",
        " me",
        " look.",
        ToolCall("a", {"x": 1}, id="call_1"),
        ToolCall("b", id="mine"),
    ]
    assert llm.calls == [[Message("user", "hi")]]
    assert llm.calls[0].tool_names == ["book_table"]


@pytest.mark.anyio
async def test_fake_llm_refuses_a_scripted_call_without_tools() -> None:
    from voicepipe.errors import ProviderError

    llm = FakeLLM([ToolCall("a")])
    with pytest.raises(ProviderError, match="got no tools="):
        _ = [item async for item in llm.stream([])]


HANGING_TOOL = """
import threading, anyio
from voicepipe.tools import tool
def lookup() -> str:
    \"\"\"Never returns.\"\"\"
    threading.Event().wait()
    return ""
async def main() -> None:
    print((await tool(lookup).run({}, time_limit=0.01)).content, flush=True)
for backend in ("asyncio", "trio"):
    anyio.run(main, backend=backend)
print("exiting", flush=True)
"""


def test_a_sync_tool_that_never_returns_does_not_keep_the_process_from_exiting() -> None:
    # On asyncio anyio's worker threads are not daemons: the abandoned call kept the
    # interpreter waiting for it at exit, forever (a server that never shut down).
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", HANGING_TOOL],
        capture_output=True,
        text=True,
        timeout=120,  # (a guard: the bug is a process that never exits)
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["lookup timed out after 0.01 s"] * 2 + ["exiting"]


@pytest.mark.anyio
async def test_a_sync_tool_stuck_past_its_time_limit_is_not_called_again_beyond_a_bound() -> None:
    from voicepipe.tools import MAX_ABANDONED

    release = threading.Event()
    calls: list[int] = []

    def lookup() -> str:
        """Hangs until released."""
        calls.append(1)
        release.wait()
        return "found"

    stuck = tool(lookup)
    results = [await stuck.run({}, time_limit=0.01) for _ in range(MAX_ABANDONED + 1)]
    assert [r.content for r in results] == ["lookup timed out after 0.01 s"] * MAX_ABANDONED + [
        f"lookup was not called: {MAX_ABANDONED} earlier calls are still running past "
        "their time limit"
    ]
    assert len(calls) == MAX_ABANDONED  # the last one never ran
    release.set()  # the stuck calls end: the tool is called again
    for thread in threading.enumerate():
        if thread.name == "voicepipe tool lookup":
            await anyio.to_thread.run_sync(thread.join)
    result = await stuck.run({}, time_limit=60)
    assert (result.ok, result.content) == (True, "found")
