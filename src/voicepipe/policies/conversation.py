"""Free conversation: a system prompt, a memory window, and a goodbye that ends the session."""

from __future__ import annotations

import re
from collections.abc import Sequence

from voicepipe.policies.base import PolicyContext, Reply
from voicepipe.providers.base import Message

__all__ = ["ConversationPolicy"]

_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)?")


def _words(text: str) -> list[str]:
    return _WORD.findall(text.casefold())


class ConversationPolicy:
    """A free assistant.

    The LLM sees ``system_prompt`` plus the last ``memory_size`` messages. A
    user turn that *ends* with one of ``end_phrases`` (case and punctuation
    ignored; "bye" inside a sentence does not count) ends the session after the
    optional ``farewell`` is spoken. ``greeting`` is spoken first, if set.
    History keeps only what the user actually heard of each reply.
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
    ) -> None:
        if memory_size < 1:
            raise ValueError("memory_size must be at least 1 (the user's own turn)")
        self.system_prompt = system_prompt
        self.memory_size = memory_size
        self.end_phrases = [w for w in (_words(p) for p in end_phrases) if w]
        self.greeting = greeting
        self.farewell = farewell
        self.history: list[Message] = []

    def is_goodbye(self, text: str) -> bool:
        """True when ``text`` ends with one of the end phrases."""
        words = _words(text)
        return any(words[-len(p) :] == p for p in self.end_phrases if len(words) >= len(p))

    def messages(self) -> list[Message]:
        """What goes to the LLM: the system prompt and the memory window."""
        window = self.history[-self.memory_size :]
        return [Message("system", self.system_prompt), *window]

    async def start(self, ctx: PolicyContext) -> Reply | None:
        return Reply(self.greeting) if self.greeting else None

    async def on_user_turn(self, text: str, ctx: PolicyContext) -> Reply | None:
        if self.is_goodbye(text):
            return Reply(self.farewell or "", end_session=True, finish_reason="goodbye")
        self.history.append(Message("user", text))
        return Reply(ctx.llm.stream(self.messages(), usage=ctx.usage))

    async def on_reply_done(self, text: str, *, spoken: str, interrupted: bool) -> None:
        if spoken.strip():
            self.history.append(Message("assistant", spoken.strip()))
        del self.history[: -self.memory_size]
