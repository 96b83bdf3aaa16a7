"""The turn-logic protocol: what the assistant says at the start and after each user turn.

A policy decides *what* to say; the pipeline decides *how* (sentence by
sentence through TTS, cancelled on barge-in). A policy instance belongs to one
session and may keep state (history, form progress).
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from voicepipe.events import Event
from voicepipe.providers.base import LLM, Usage

__all__ = ["Policy", "PolicyContext", "Reply"]


@dataclass(slots=True)
class Reply:
    """What to say next.

    ``text`` is a string or a stream of text deltas (an LLM reply). ``events``
    are emitted before the reply is spoken (``form_progress``, say). With
    ``end_session`` the pipeline ends the session with ``finish`` (and
    ``finish_reason``) once the reply has been spoken.
    """

    text: str | AsyncIterable[str] = ""
    end_session: bool = False
    events: Sequence[Event] = ()
    finish_reason: str = "policy"


@dataclass(slots=True)
class PolicyContext:
    """What the pipeline lends a policy for one turn."""

    llm: LLM
    usage: Usage = field(default_factory=Usage)


@runtime_checkable
class Policy(Protocol):
    """Turn logic. Implement these three methods to write your own."""

    async def start(self, ctx: PolicyContext) -> Reply | None:
        """The opening line (a greeting, the first question), or None to wait for the user."""
        ...

    async def on_user_turn(self, text: str, ctx: PolicyContext) -> Reply | None:
        """The reply to a finished user turn, or None to say nothing."""
        ...

    async def on_reply_done(self, text: str, *, spoken: str, interrupted: bool) -> None:
        """Told after every reply: ``text`` is all that was produced, ``spoken``
        the part the user actually got (audio emitted, or text in text mode)."""
        ...
