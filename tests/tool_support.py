"""Helpers for the tool tests: the provider-validity check of a chat history."""

from __future__ import annotations

from collections.abc import Sequence

from voicepipe.events import Event, ToolCallEvent, ToolResultEvent
from voicepipe.providers.base import Message


def assert_valid_history(messages: Sequence[Message]) -> None:
    """Every tool call is answered right after its message, and no result is orphaned.

    That is what OpenAI-compatible providers (Groq) accept: an assistant
    message with ``tool_calls`` is followed by one ``tool`` message per call
    (matched by id), and a ``tool`` message only ever follows those.
    """
    index = 0
    while index < len(messages):
        message = messages[index]
        assert message.role != "tool", f"tool result without its call at {index}: {messages}"
        index += 1
        if message.role == "assistant" and message.tool_calls:
            ids = [call.id for call in message.tool_calls]
            assert all(ids) and len(set(ids)) == len(ids), f"call ids: {ids}"
            answers = messages[index : index + len(ids)]
            assert [m.role for m in answers] == ["tool"] * len(ids), f"unanswered: {messages}"
            assert sorted(m.tool_call_id or "" for m in answers) == sorted(ids)
            index += len(ids)


def assert_tool_events_ok(events: Sequence[Event]) -> None:
    """Every ``tool_call`` gets one ``tool_result`` (same id and name) after it, no result
    comes without its call, and no id is called twice."""
    calls: dict[str, int] = {}
    results: dict[str, int] = {}
    for index, event in enumerate(events):
        if isinstance(event, ToolCallEvent):
            assert event.id not in calls, f"tool call {event.id} started twice"
            calls[event.id] = index
        elif isinstance(event, ToolResultEvent):
            assert event.id in calls, f"tool result {event.id} without its call"
            assert event.id not in results, f"tool call {event.id} answered twice"
            call = events[calls[event.id]]
            assert isinstance(call, ToolCallEvent) and call.name == event.name
            results[event.id] = index
    assert calls.keys() == results.keys(), f"unanswered calls: {calls.keys() - results.keys()}"
