"""ConversationPolicy's tool loop in a Pipeline on fakes: calls, errors, barge-in, filler, end_call.

Each test also checks that every history the model saw (and the policy's own)
is a valid sequence for an OpenAI-compatible provider.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Sequence

import anyio
import pytest

from tests.support import FORMAT, chunks, of_type, types, utterance
from tests.tool_support import assert_tool_events_ok, assert_valid_history
from voicepipe import (
    AssistantDelta,
    AssistantReply,
    ConversationPolicy,
    ErrorEvent,
    Event,
    Finish,
    Interrupted,
    Message,
    Metrics,
    Pipeline,
    PolicyContext,
    Usage,
)
from voicepipe.events import ToolCallEvent, ToolResultEvent
from voicepipe.providers.fake import FakeLLM, FakeSTT, FakeTTS, ToolCall
from voicepipe.testing import assert_session_ok

pytestmark = pytest.mark.anyio

WEATHER = {"Paris": "sunny, 22 C", "Oslo": "snow, -3 C"}


async def get_weather(city: str) -> str:
    """Today's weather in a city."""
    return WEATHER[city]


async def run_text(
    llm: FakeLLM, policy: ConversationPolicy, turns: Sequence[str], *, tts: bool = True
) -> list[Event]:
    pipeline = Pipeline(llm=llm, tts=FakeTTS() if tts else None, policy=policy)
    with anyio.fail_after(10):
        async with pipeline.run_text(turns) as stream:
            events = [event async for event in stream]
    check_histories(llm, policy)
    assert_tool_events_ok(events)
    assert_session_ok(events, llm=llm)
    return events


def check_histories(llm: FakeLLM, policy: ConversationPolicy) -> None:
    for call in llm.calls:
        assert_valid_history(call)
    assert_valid_history(policy.history)
    assert_valid_history(policy.messages())


async def test_one_tool_call_then_the_answer() -> None:
    llm = FakeLLM([ToolCall("get_weather", {"city": "Paris"}), "It is sunny in Paris."])
    policy = ConversationPolicy("SYS", tools=[get_weather])
    events = await run_text(llm, policy, ["weather in Paris?"])

    assert types(events) == [
        "session", "user_turn", "tool_call", "tool_result",
        "assistant_delta", "audio", "assistant", "metrics", "finish",
    ]  # fmt: skip
    assert of_type(events, ToolCallEvent) == [
        ToolCallEvent(id="call_1", name="get_weather", arguments={"city": "Paris"})
    ]
    assert of_type(events, ToolResultEvent) == [
        ToolResultEvent(id="call_1", name="get_weather", ok=True, content="sunny, 22 C")
    ]
    assert of_type(events, AssistantReply)[0].content == "It is sunny in Paris."
    # The model was given the tool, then the call and its result.
    assert llm.calls[0].tool_names == ["get_weather"]
    assert llm.calls[0].tools[0].parameters["required"] == ["city"]
    assert llm.calls[1] == [
        Message("system", "SYS"),
        Message("user", "weather in Paris?"),
        Message(
            "assistant", "", tool_calls=(ToolCall("get_weather", {"city": "Paris"}, "call_1"),)
        ),
        Message("tool", "sunny, 22 C", tool_call_id="call_1"),
    ]
    assert policy.history[-1] == Message("assistant", "It is sunny in Paris.")
    metrics = of_type(events, Metrics)[0]
    assert metrics.tool_ms is not None and metrics.tool_ms >= 0
    assert llm.open_streams == 0


async def test_two_parallel_calls_run_at_the_same_time() -> None:
    started: dict[str, anyio.Event] = {"Paris": anyio.Event(), "Oslo": anyio.Event()}

    async def weather(city: str) -> str:
        """Today's weather in a city."""
        started[city].set()
        for other in started.values():  # each waits for the other: only parallel calls finish
            await other.wait()
        return WEATHER[city]

    llm = FakeLLM(
        [
            [ToolCall("weather", {"city": "Paris"}), ToolCall("weather", {"city": "Oslo"})],
            "Paris is sunny and Oslo has snow.",
        ]
    )
    policy = ConversationPolicy(tools=[weather])
    events = await run_text(llm, policy, ["Paris and Oslo?"])

    assert [e.id for e in of_type(events, ToolCallEvent)] == ["call_1", "call_2"]
    results = {e.id: e.content for e in of_type(events, ToolResultEvent)}
    assert results == {"call_1": "sunny, 22 C", "call_2": "snow, -3 C"}
    second = llm.calls[1]
    assert [m.role for m in second[-3:]] == ["assistant", "tool", "tool"]
    assert [m.tool_call_id for m in second[-2:]] == ["call_1", "call_2"]
    assert of_type(events, AssistantReply)[0].content == "Paris is sunny and Oslo has snow."


async def test_a_tool_that_raises_tells_the_model_not_the_caller() -> None:
    async def get_weather(city: str) -> str:
        """Today's weather in a city."""
        raise ConnectionError("weather service down")

    llm = FakeLLM([ToolCall("get_weather", {"city": "Paris"}), "Sorry, I can't check now."])
    policy = ConversationPolicy(tools=[get_weather])
    events = await run_text(llm, policy, ["weather?"])

    result = of_type(events, ToolResultEvent)[0]
    assert (result.ok, result.content) == (False, "ConnectionError: weather service down")
    assert llm.calls[1][-1] == Message(
        "tool", "ConnectionError: weather service down", tool_call_id="call_1"
    )
    assert of_type(events, ErrorEvent) == []  # nothing for the caller's ears
    assert of_type(events, AssistantReply)[0].content == "Sorry, I can't check now."


async def test_bad_arguments_and_unknown_tools_go_back_to_the_model() -> None:
    ran: list[str] = []

    async def get_weather(city: str) -> str:
        """Today's weather in a city."""
        ran.append(city)
        return "sunny"

    llm = FakeLLM(
        [
            [
                ToolCall("get_weather", {"town": "Paris"}),
                ToolCall("get_weather", '{"city": "Par'),
                ToolCall("get_wether", {"city": "Paris"}),
            ],
            "Which city?",
        ]
    )
    policy = ConversationPolicy(tools=[get_weather])
    events = await run_text(llm, policy, ["weather?"])

    results = of_type(events, ToolResultEvent)
    assert [r.ok for r in results] == [False, False, False]
    contents = sorted(r.content for r in results)
    assert (
        "invalid arguments: city: Field required; town: Extra inputs are not permitted" in contents
    )
    assert any(c.startswith("arguments are not valid JSON") for c in contents)
    assert "unknown tool 'get_wether'; the tools are: get_weather" in contents
    assert of_type(events, ToolCallEvent)[1].arguments == '{"city": "Par'
    assert ran == []
    assert [m.role for m in llm.calls[1][-4:]] == ["assistant", "tool", "tool", "tool"]


async def test_a_tool_that_times_out_is_an_error_result() -> None:
    async def get_weather(city: str) -> str:
        """Today's weather in a city."""
        await anyio.sleep_forever()
        return ""

    llm = FakeLLM([ToolCall("get_weather", {"city": "Paris"}), "The weather service is slow."])
    policy = ConversationPolicy(tools=[get_weather], tool_timeout=0.05, filler=None)
    events = await run_text(llm, policy, ["weather?"])

    result = of_type(events, ToolResultEvent)[0]
    assert (result.ok, result.content) == (False, "get_weather timed out after 0.05 s")
    assert llm.calls[1][-1].content == "get_weather timed out after 0.05 s"
    assert of_type(events, AssistantReply)[0].content == "The weather service is slow."


async def test_barge_in_during_a_tool_call_keeps_its_result_for_the_next_turn() -> None:
    runs: list[str] = []
    tool_started = anyio.Event()
    release = anyio.Event()

    async def get_weather(city: str) -> str:
        """Today's weather in a city."""
        runs.append(city)
        tool_started.set()
        await release.wait()  # still running when the user speaks
        return WEATHER[city]

    tts = FakeTTS(chunk_delay=0.001)  # "Let me check." may still be playing at the barge-in

    async def audio() -> AsyncIterator[bytes]:
        async for chunk in chunks(utterance()):
            yield chunk
        await tool_started.wait()
        async for chunk in chunks(utterance()):  # barge-in while the tool runs
            yield chunk

    llm = FakeLLM(
        [
            ["Let me check.", ToolCall("get_weather", {"city": "Paris"})],
            "It was sunny, 22 degrees.",
        ]
    )
    policy = ConversationPolicy(tools=[get_weather], filler=None)
    stt = FakeSTT(["weather in Paris", "what did you find"])
    pipeline = Pipeline(stt=stt, llm=llm, tts=tts, policy=policy, input_format=FORMAT)
    events: list[Event] = []
    with anyio.fail_after(10):
        async with pipeline.run(audio()) as stream:
            async for event in stream:
                events.append(event)
                if isinstance(event, Interrupted):
                    release.set()

    sequence = types(events)
    barge = sequence.index("interrupted")
    first_reply_end = sequence.index("assistant")
    assert sequence.index("tool_call") < barge < sequence.index("tool_result") < first_reply_end
    # Nothing of the interrupted reply is heard after the barge-in.
    assert "audio" not in sequence[barge:first_reply_end], " ".join(sequence)
    first, second = of_type(events, AssistantReply)
    assert first.interrupted
    assert first.content == of_type(events, Interrupted)[0].content  # what was heard of it
    assert second.content == "It was sunny, 22 degrees."
    # The tool ran once; the model was not asked again until the new turn, which saw the result.
    assert runs == ["Paris"]
    assert len(llm.calls) == 2
    assert [(m.role, m.content) for m in llm.calls[1][1:]] == [
        ("user", "weather in Paris"),
        ("assistant", first.content),  # the call, with what was heard of its words
        ("tool", "sunny, 22 C"),
        ("user", "what did you find"),
    ]
    check_histories(llm, policy)
    assert_tool_events_ok(events)
    assert_session_ok(events, llm=llm)
    assert llm.open_streams == 0
    assert events[-1] == Finish(reason="end_of_input")


async def test_a_slow_tool_gets_the_filler_line_once() -> None:
    heard_filler = anyio.Event()

    async def get_weather(city: str) -> str:
        """Today's weather in a city."""
        await heard_filler.wait()  # slow until the filler has been said
        return WEATHER[city]

    llm = FakeLLM(
        [
            ToolCall("get_weather", {"city": "Paris"}),
            ToolCall("get_weather", {"city": "Oslo"}),
            "Sunny in Paris, snow in Oslo.",
        ]
    )
    policy = ConversationPolicy(tools=[get_weather], filler="One moment.", filler_after=0)
    pipeline = Pipeline(llm=llm, tts=FakeTTS(), policy=policy)
    events: list[Event] = []
    with anyio.fail_after(10):
        async with pipeline.run_text(["weather?"]) as stream:
            async for event in stream:
                events.append(event)
                if isinstance(event, AssistantDelta) and event.content == "One moment.":
                    heard_filler.set()

    spoken = [e.content for e in of_type(events, AssistantDelta)]
    assert spoken == ["One moment.", " Sunny in Paris, snow in Oslo."]
    sequence = types(events)
    assert sequence.index("assistant_delta") < sequence.index("tool_result")
    assert of_type(events, AssistantReply)[0].content == "One moment. Sunny in Paris, snow in Oslo."
    # The filler is not history: only the answer after the last round is.
    assert policy.history[-1] == Message("assistant", "Sunny in Paris, snow in Oslo.")
    check_histories(llm, policy)
    assert_tool_events_ok(events)
    assert_session_ok(events, llm=llm)


async def test_a_fast_tool_gets_no_filler() -> None:
    llm = FakeLLM([ToolCall("get_weather", {"city": "Paris"}), "Sunny."])
    policy = ConversationPolicy(tools=[get_weather], filler_after=30)
    events = await run_text(llm, policy, ["weather?"])
    assert [e.content for e in of_type(events, AssistantDelta)] == ["Sunny."]


async def test_end_call_speaks_the_goodbye_then_finishes() -> None:
    llm = FakeLLM([["Goodbye, enjoy your evening!", ToolCall("end_call")]])
    policy = ConversationPolicy(tools=[get_weather], end_call=True)
    events = await run_text(llm, policy, ["that's everything, thanks", "never answered"])

    assert llm.calls[0].tool_names == ["get_weather", "end_call"]
    assert of_type(events, ToolResultEvent)[0].name == "end_call"
    assert of_type(events, AssistantReply)[0].content == "Goodbye, enjoy your evening!"
    assert types(events)[-3:] == ["assistant", "metrics", "finish"]
    assert events[-1] == Finish(reason="end_call")
    assert len(llm.calls) == 1  # not asked again after end_call


async def test_end_call_without_words_says_the_farewell() -> None:
    llm = FakeLLM([ToolCall("end_call")])
    policy = ConversationPolicy(end_call=True, farewell="Take care!")
    events = await run_text(llm, policy, ["hang up"])
    assert of_type(events, AssistantReply)[0].content == "Take care!"
    assert events[-1] == Finish(reason="end_call")


async def test_end_call_is_opt_in() -> None:
    llm = FakeLLM([ToolCall("end_call"), "I can't hang up myself."])
    policy = ConversationPolicy(tools=[get_weather])
    events = await run_text(llm, policy, ["hang up"])
    assert of_type(events, ToolResultEvent)[0].ok is False
    assert events[-1] == Finish(reason="end_of_input")


async def test_the_rounds_per_turn_are_bounded() -> None:
    llm = FakeLLM([ToolCall("get_weather", {"city": "Paris"})] * 3)
    policy = ConversationPolicy(tools=[get_weather], max_tool_rounds=2)
    events = await run_text(llm, policy, ["weather?"], tts=False)

    assert len(of_type(events, ToolCallEvent)) == 2  # the third round's call never ran
    assert len(llm.calls) == 3
    assert of_type(events, AssistantReply)[0].content == "Sorry, I could not finish that."
    assert [m.role for m in policy.history].count("tool") == 2


async def test_an_llm_without_tool_support_is_a_clear_error() -> None:
    class TextOnly:
        async def stream(
            self, messages: Sequence[Message], *, usage: Usage | None = None
        ) -> AsyncIterator[str]:
            yield "hi"

        async def complete_json(
            self, messages: object, schema: object, *, usage: object = None
        ) -> object:
            raise NotImplementedError

    policy = ConversationPolicy(tools=[get_weather])
    pipeline = Pipeline(llm=TextOnly(), policy=policy)  # type: ignore[arg-type]
    async with pipeline.run_text(["hi"]) as stream:
        events = [event async for event in stream]
    errors = of_type(events, ErrorEvent)
    assert errors and all("TextOnly.stream() takes no tools=" in e.message for e in errors)
    assert "GroqLLM" in errors[0].message


async def test_memory_window_never_starts_inside_a_tool_round() -> None:
    llm = FakeLLM(
        [
            [ToolCall("get_weather", {"city": "Paris"}), ToolCall("get_weather", {"city": "Oslo"})],
            "Sunny and snowy.",
            "Yes.",
        ]
    )
    policy = ConversationPolicy(tools=[get_weather], memory_size=3)
    await run_text(llm, policy, ["weather?", "really?"], tts=False)
    # A window of 3 cut the first turn's results off from their call: they are skipped.
    for call in llm.calls:
        assert call[1].role != "tool"


async def test_a_caller_leaving_during_a_tool_call_cancels_it_at_once() -> None:
    # A cut lets a started round finish (its result is kept for the next turn), but the
    # session's end does not wait for it: with nobody left to hear the answer, the caller
    # leaving must not hold the session for the tool's whole timeout.
    started, ended = anyio.Event(), []

    async def get_weather(city: str) -> str:
        """Today's weather in a city."""
        started.set()
        try:
            await anyio.sleep_forever()
        finally:
            ended.append(city)
        return WEATHER[city]

    llm = FakeLLM([ToolCall("get_weather", {"city": "Paris"}), "Sunny."])
    policy = ConversationPolicy(tools=[get_weather], filler=None, tool_timeout=3600)
    pipeline = Pipeline(llm=llm, tts=FakeTTS(), policy=policy, event_buffer=1)
    with anyio.fail_after(30):  # (without the fix: the tool's 3,600 s)
        async with pipeline.run_text(["weather?"]) as stream:
            async for event in stream:
                if isinstance(event, ToolCallEvent):
                    await started.wait()
                    break  # stop reading with the tool running

    assert ended == ["Paris"]  # cancelled, not left running
    assert_valid_history(policy.history)  # no call without its result
    assert [m.role for m in policy.history] == ["user"]
    assert llm.open_streams == 0


async def test_a_caller_leaving_during_a_stuck_sync_tool_is_not_held_by_it() -> None:
    started, release = threading.Event(), threading.Event()

    def get_weather(city: str) -> str:
        """Today's weather in a city."""
        started.set()
        release.wait()
        return WEATHER[city]

    llm = FakeLLM([ToolCall("get_weather", {"city": "Paris"}), "Sunny."])
    policy = ConversationPolicy(tools=[get_weather], filler=None, tool_timeout=3600)
    pipeline = Pipeline(llm=llm, tts=FakeTTS(), policy=policy)
    try:
        with anyio.fail_after(30):
            async with pipeline.run_text(["weather?"]) as stream:
                async for event in stream:
                    if isinstance(event, ToolCallEvent):
                        await anyio.to_thread.run_sync(started.wait)
                        break
        assert [m.role for m in policy.history] == ["user"]
    finally:
        release.set()  # the abandoned thread returns (joined: other tests count threads)
        for thread in threading.enumerate():
            if thread.name == "voicepipe tool get_weather":
                await anyio.to_thread.run_sync(thread.join, 10)


async def test_a_repeated_call_id_runs_once() -> None:
    runs: list[str] = []

    async def get_weather(city: str) -> str:
        """Today's weather in a city."""
        runs.append(city)
        return WEATHER[city]

    twice = ToolCall("get_weather", {"city": "Paris"}, id="call_x")
    llm = FakeLLM([[twice, twice], "Sunny."])
    policy = ConversationPolicy(tools=[get_weather])
    events = await run_text(llm, policy, ["weather?"], tts=False)
    assert runs == ["Paris"]
    assert [e.id for e in of_type(events, ToolResultEvent)] == ["call_x"]


async def test_words_before_a_call_are_kept_only_as_far_as_they_were_heard() -> None:
    llm = FakeLLM(
        [["Let me check that. One sec.", ToolCall("get_weather", {"city": "Paris"})], "Sunny."]
    )
    policy = ConversationPolicy(tools=[get_weather])
    ctx = PolicyContext(llm)
    reply = await policy.on_user_turn("weather?", ctx)
    assert reply is not None and not isinstance(reply.text, str)
    said = "".join([piece async for piece in reply.text])
    assert said == "Let me check that. One sec. Sunny."
    # The caller cut in after the first sentence: only it was heard.
    await policy.on_reply_done(said, spoken="Let me check that.", interrupted=True)
    assert [(m.role, m.content) for m in policy.history] == [
        ("user", "weather?"),
        ("assistant", "Let me check that."),
        ("tool", "sunny, 22 C"),
    ]
    assert_valid_history(policy.history)
