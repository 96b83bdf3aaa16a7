"""The OpenAI chat shapes that Groq and llama.cpp share: messages with tool calls, tools,
and the streamed tool-call pieces put back together."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from voicepipe.providers.base import Message, ToolCall, ToolSpec

__all__ = ["CallAssembler", "chat_messages", "chat_tools"]


def chat_messages(messages: Sequence[Message]) -> list[dict[str, Any]]:
    """Messages as dicts, assistant ``tool_calls`` (arguments as JSON text) and ``tool`` results
    included."""
    out: list[dict[str, Any]] = []
    for m in messages:
        if m.role == "tool":
            out.append({"role": "tool", "tool_call_id": m.tool_call_id, "content": m.content})
        elif m.tool_calls:
            calls = [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {
                        "name": call.name,
                        "arguments": call.arguments
                        if isinstance(call.arguments, str)
                        else json.dumps(call.arguments, ensure_ascii=False),
                    },
                }
                for call in m.tool_calls
            ]
            out.append({"role": m.role, "content": m.content or None, "tool_calls": calls})
        else:
            out.append({"role": m.role, "content": m.content})
    return out


def chat_tools(tools: Iterable[ToolSpec]) -> list[dict[str, Any]]:
    """Tools as ``{"type": "function", "function": {...}}`` dicts."""
    return [
        {
            "type": "function",
            "function": {
                "name": t.name,
                "description": t.description,
                "parameters": dict(t.parameters),
            },
        }
        for t in tools
    ]


class CallAssembler:
    """Streamed tool-call pieces → whole calls.

    A call's first piece carries its ``index``, ``id`` and name; later pieces
    only the ``index`` and more of the arguments, which are JSON only once
    joined.
    """

    def __init__(self) -> None:
        self._calls: dict[int, tuple[list[str], list[str], list[str]]] = {}

    def add(self, index: int, id: str | None, name: str | None, arguments: str | None) -> None:
        ids, names, pieces = self._calls.setdefault(index, ([], [], []))
        if id:
            ids[:] = [id]
        if name:
            names[:] = [name]
        if arguments:
            pieces.append(arguments)

    def calls(self) -> list[ToolCall]:
        """The calls in the model's order; arguments that are not a JSON object stay text
        (the tool runner tells the model)."""
        out: list[ToolCall] = []
        # A model's indexes are ints; a piece without one (None) comes after them, in
        # the order it came, rather than failing the sort.
        for index in sorted(self._calls, key=lambda i: (not isinstance(i, int), _int(i))):
            ids, names, pieces = self._calls[index]
            text = "".join(pieces)
            try:
                parsed = json.loads(text or "{}")
            except (ValueError, RecursionError):  # not JSON, or nested past any use
                parsed = None
            arguments = parsed if isinstance(parsed, dict) else text
            out.append(ToolCall("".join(names), arguments, id="".join(ids)))
        return out


def _int(index: object) -> int:
    return index if isinstance(index, int) else 0
