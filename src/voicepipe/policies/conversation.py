"""Free conversation: a system prompt, a memory window, a goodbye that ends the session,
and optionally tools the model can call (the call loop lives here)."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import replace
from typing import TYPE_CHECKING, Any, cast

import anyio

from voicepipe.events import Event, ToolCallEvent, ToolResultEvent
from voicepipe.policies.base import PolicyContext, Reply
from voicepipe.providers.base import Message, ToolCall, ToolLLM, ToolSpec, Usage

if TYPE_CHECKING:
    from voicepipe.tools import Tool, ToolResult

__all__ = ["END_CALL", "ConversationPolicy"]

log = logging.getLogger("voicepipe.policies.conversation")

_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)?")

END_CALL = ToolSpec(
    "end_call",
    "End the call. Use it when the caller is done or asks to hang up, and say a short "
    "goodbye in the same reply.",
    {"type": "object", "properties": {}},
)
"""The built-in tool that lets the model end the session (``ConversationPolicy(end_call=True)``)."""

EVENT_CONTENT_CHARS = 200
"""``tool_result`` events carry at most this many characters of the result."""


def _words(text: str) -> list[str]:
    return _WORD.findall(text.casefold())


class ConversationPolicy:
    """A free assistant, optionally with tools.

    The LLM sees ``system_prompt`` plus the last ``memory_size`` messages. A
    user turn that *ends* with one of ``end_phrases`` (case and punctuation
    ignored; "bye" inside a sentence does not count) ends the session after the
    optional ``farewell`` is spoken. ``greeting`` is spoken first, if set.
    History keeps only what the user actually heard of each reply.

    With ``tools`` (typed functions or :class:`voicepipe.tools.Tool` objects)
    each turn runs the loop model → tool calls → results → model, at most
    ``max_tool_rounds`` rounds of calls; a call runs at most ``tool_timeout``
    seconds. When a round of calls takes longer than ``filler_after``
    seconds, ``filler`` is said once per turn (None: never). ``end_call``
    adds a built-in tool with which the model ends the session: its goodbye
    (or ``farewell``) is spoken, then the session finishes (reason
    ``end_call``). A call that has started always finishes and its result
    is kept, even if the user barges in; see ``docs/tools.md``.
    """

    def __init__(
        self,
        system_prompt: str = "You are a helpful voice assistant. Answer briefly, in plain "
        "spoken sentences without lists or markup.",
        *,
        memory_size: int = 10,
        end_phrases: Sequence[str] = ("bye", "goodbye"),
        greeting: str | None = None,
        farewell: str | None = None,
        tools: Sequence[Tool | Callable[..., Any]] = (),
        max_tool_rounds: int = 3,
        tool_timeout: float = 10.0,
        filler: str | None = "One moment.",
        filler_after: float = 1.0,
        end_call: bool = False,
        give_up: str = "Sorry, I could not finish that.",
    ) -> None:
        if memory_size < 1:
            raise ValueError("memory_size must be at least 1 (the user's own turn)")
        if max_tool_rounds < 1:
            raise ValueError("max_tool_rounds must be at least 1")
        if not tool_timeout > 0:
            raise ValueError("tool_timeout must be a positive number of seconds")
        self.system_prompt = system_prompt
        self.memory_size = memory_size
        self.end_phrases = [w for w in (_words(p) for p in end_phrases) if w]
        self.greeting = greeting
        self.farewell = farewell
        self.tools: dict[str, Tool] = {}
        if tools:
            from voicepipe.tools import as_tools  # pydantic: only when tools are used

            self.tools = {t.name: t for t in as_tools(tools)}
        if end_call and END_CALL.name in self.tools:
            raise ValueError("a tool is already named end_call: rename it or drop end_call=True")
        self.end_call = end_call
        self.max_tool_rounds = max_tool_rounds
        self.tool_timeout = tool_timeout
        self.filler = filler
        self.filler_after = filler_after
        self.give_up = give_up
        self.history: list[Message] = []
        self._said_before = 0  # characters of this reply said before its last model round
        self._rounds: list[tuple[int, int, int]] = []  # tool-call message: history index, text span
        self._call_ids: set[str] = set()  # every tool call id of the session

    @property
    def tool_specs(self) -> list[ToolSpec]:
        """What the model is told it can call."""
        specs = [t.spec for t in self.tools.values()]
        return [*specs, END_CALL] if self.end_call else specs

    def is_goodbye(self, text: str) -> bool:
        """True when ``text`` ends with one of the end phrases."""
        words = _words(text)
        return any(words[-len(p) :] == p for p in self.end_phrases if len(words) >= len(p))

    def messages(self) -> list[Message]:
        """What goes to the LLM: the system prompt and the memory window.

        The window never starts with a tool result cut off from its call.
        """
        return [Message("system", self.system_prompt), *_window(self.history, self.memory_size)]

    async def start(self, ctx: PolicyContext) -> Reply | None:
        self._said_before = 0
        self._rounds.clear()
        if self.tool_specs:
            _require_tools(ctx)  # say so at the start of the session, not on the first turn
        return Reply(self.greeting) if self.greeting else None

    async def on_user_turn(self, text: str, ctx: PolicyContext) -> Reply | None:
        self._said_before = 0
        self._rounds.clear()
        if self.is_goodbye(text):
            return Reply(self.farewell or "", end_session=True, finish_reason="goodbye")
        if not self.tool_specs:
            self.history.append(Message("user", text))
            return Reply(ctx.llm.stream(self.messages(), usage=ctx.usage))
        llm = _require_tools(ctx)
        self.history.append(Message("user", text))
        reply = Reply()
        reply.text = self._with_tools(llm, ctx, reply)
        return reply

    async def on_reply_done(self, text: str, *, spoken: str, interrupted: bool) -> None:
        # Text said before the last round is in history with its tool calls: keep only
        # what was heard of it there too.
        for index, start, end in self._rounds:
            message = self.history[index]
            heard = spoken[start:end].strip()
            if message.content != heard:
                self.history[index] = replace(message, content=heard)
        self._rounds.clear()
        last = spoken[self._said_before :].strip()
        self._said_before = 0
        if last:
            self.history.append(Message("assistant", last))
        self.history[:] = _window(self.history, self.memory_size)

    # -- the tool loop ---------------------------------------------------------

    async def _with_tools(
        self, llm: ToolLLM, ctx: PolicyContext, reply: Reply
    ) -> AsyncGenerator[str, None]:
        """The reply text of one turn: model rounds, with tool calls run in between."""
        said = ""  # everything yielded in this reply
        filler_said = False
        for round_number in range(self.max_tool_rounds + 1):
            self._said_before = len(said)
            text, calls = "", []
            usage = Usage()
            items = llm.stream(self.messages(), usage=usage, tools=self.tool_specs)
            async with _closing(items):
                async for item in items:
                    if isinstance(item, ToolCall):
                        calls.append(item)
                        continue
                    if not item:
                        continue
                    if said and not text and not said[-1].isspace() and not item[0].isspace():
                        item = " " + item  # rounds join into one spoken reply
                    text += item
                    said += item
                    yield item
            _add_usage(ctx.usage, usage)
            calls = _unique(calls, self._call_ids)
            if not calls:
                if round_number and not text.strip():
                    # The model said nothing with the results: never leave the caller
                    # in silence after a tool call.
                    yield (" " if said else "") + self.give_up
                return
            if round_number == self.max_tool_rounds:
                # Past the bound: these calls are neither run nor kept in history.
                log.warning("tool rounds exhausted; dropped calls to %s", [c.name for c in calls])
                if not text.strip():
                    yield (" " if said else "") + self.give_up
                return
            done = anyio.Event()
            if ctx.task_group is None:  # outside a pipeline: no filler, just run
                await self._run_round(ctx, reply, text, calls, len(said), done)
            else:
                ctx.task_group.start_soon(self._run_round, ctx, reply, text, calls, len(said), done)
                if self.filler and not filler_said:
                    with anyio.move_on_after(self.filler_after):
                        await done.wait()
                    if not done.is_set():
                        filler_said = True
                        piece = (" " if said and not said[-1].isspace() else "") + self.filler
                        said += piece
                        yield piece
                await done.wait()
            if reply.end_session:
                if not said.strip():
                    yield self.farewell or "Goodbye."
                return

    async def _run_round(
        self,
        ctx: PolicyContext,
        reply: Reply,
        text: str,
        calls: list[ToolCall],
        said: int,
        done: anyio.Event,
    ) -> None:
        """Run one round of calls at once and record them with their results.

        Shielded from a cut: once started, the calls finish (each within the
        timeout) even if the reply is cancelled by barge-in, and the history
        always holds each call together with its result. The session's end
        cancels them (nobody is left to hear the answer).
        """
        try:
            with ctx.shield_from_cut():
                started = anyio.current_time()
                for call in calls:
                    await self._emit(ctx, ToolCallEvent(**_call_fields(call)))
                results: dict[str, ToolResult] = {}
                async with anyio.create_task_group() as tg:
                    for call in calls:
                        tg.start_soon(self._run_call, ctx, call, results)
                self._rounds.append((len(self.history), said - len(text), said))
                self.history.append(Message("assistant", text.strip(), tool_calls=tuple(calls)))
                self.history += [
                    Message("tool", results[call.id].content, tool_call_id=call.id)
                    for call in calls
                ]
                self._said_before = said  # the round's text is in history now
                elapsed = (anyio.current_time() - started) * 1000
                ctx.tool_ms = round((ctx.tool_ms or 0.0) + elapsed, 3)
                if any(call.name == END_CALL.name for call in calls) and self.end_call:
                    reply.end_session = True
                    reply.finish_reason = "end_call"
        finally:
            done.set()

    async def _run_call(
        self, ctx: PolicyContext, call: ToolCall, results: dict[str, ToolResult]
    ) -> None:
        from voicepipe.tools import ToolResult

        tool = self.tools.get(call.name)
        if call.name == END_CALL.name and self.end_call:
            result = ToolResult(True, "The call ends after this reply.")
        elif tool is None:
            names = ", ".join(s.name for s in self.tool_specs)
            result = ToolResult(False, f"unknown tool {call.name!r}; the tools are: {names}")
        else:
            result = await tool.run(call.arguments, time_limit=self.tool_timeout)
        results[call.id] = result
        content = result.content
        if len(content) > EVENT_CONTENT_CHARS:
            content = content[: EVENT_CONTENT_CHARS - 1] + "…"
        event = ToolResultEvent(id=call.id, name=call.name, ok=result.ok, content=content)
        await self._emit(ctx, event)

    @staticmethod
    async def _emit(ctx: PolicyContext, event: Event) -> None:
        """Emit, but never fail a tool round over a client that has left.

        No time limit: a slow client gets every ``tool_call`` and its
        ``tool_result`` (rule 12), in order. A client that leaves closes the
        event stream, which ends a waiting emit at once, so a shielded round
        never outlives its session.
        """
        with suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
            await ctx.emit(event)


@asynccontextmanager
async def _closing(items: AsyncIterator[Any]) -> AsyncIterator[None]:
    """Close an LLM stream on the way out (cancelled or not), as the pipeline does."""
    try:
        yield
    finally:
        close = getattr(items, "aclose", None)
        if close is not None:
            with anyio.move_on_after(2.0, shield=True):
                await close()


def _require_tools(ctx: PolicyContext) -> ToolLLM:
    from voicepipe.tools import require_tool_support

    require_tool_support(ctx.llm)
    return cast(ToolLLM, ctx.llm)


def _window(history: list[Message], size: int) -> list[Message]:
    """The last ``size`` messages, moved forward past tool results whose call was cut off."""
    start = max(0, len(history) - size)
    while start < len(history) and history[start].role == "tool":
        start += 1
    return history[start:]


def _unique(calls: list[ToolCall], used: set[str]) -> list[ToolCall]:
    """Each call once: ids filled in where the model gave none, an id repeated within
    the round dropped, and an id already ``used`` in the session (a model that numbers
    its calls from 0 each round) renamed, so every call's id is its own."""
    seen: set[str] = set()
    out: list[ToolCall] = []
    for call in calls:
        if not call.id:
            call = replace(call, id=f"call_{len(used)}_{time.time_ns()}")
        if call.id in seen:
            continue
        seen.add(call.id)
        if call.id in used:
            number = len(used)
            while f"{call.id}_{number}" in used:
                number += 1
            call = replace(call, id=f"{call.id}_{number}")
        used.add(call.id)
        out.append(call)
    return out


def _call_fields(call: ToolCall) -> dict[str, Any]:
    arguments = call.arguments if isinstance(call.arguments, str) else dict(call.arguments)
    return {"id": call.id, "name": call.name, "arguments": arguments}


def _add_usage(total: Usage, usage: Usage) -> None:
    for name in ("prompt_tokens", "completion_tokens"):
        value = getattr(usage, name)
        if value is not None:
            setattr(total, name, (getattr(total, name) or 0) + value)
