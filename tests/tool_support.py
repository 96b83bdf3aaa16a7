"""Helpers for the tool tests: the provider-validity check of a chat history."""

from __future__ import annotations

from collections.abc import Sequence

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
