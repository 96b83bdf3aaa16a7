"""The turn-logic protocol: what the assistant says at the start and after each user turn.

A policy decides *what* to say; the pipeline decides *how* (sentence by
sentence through TTS, cancelled on barge-in). A policy instance belongs to one
session and may keep state (history, form progress).
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from anyio import CancelScope
from anyio.abc import TaskGroup

from voicepipe.events import Event
from voicepipe.providers.base import LLM, STTHint, Usage

__all__ = ["Policy", "PolicyContext", "Reply"]


@dataclass(slots=True)
class Reply:
    """What to say next.

    ``text`` is a string or a stream of text deltas (an LLM reply). ``events``
    are emitted before the reply is spoken (``form_progress``, say). With
    ``end_session`` the pipeline ends the session with ``finish`` (and
    ``finish_reason``) once the reply has been spoken. ``expecting`` names
    the kind of value the caller's next turn should hold (``"phone"``,
    ``"email"``, ``"number"``, ...): a hint for end-of-turn detection, since
    people pause inside phone numbers; None for free speech. ``options``
    (a choice's options) and ``confirmed`` (a wrong value will be read
    back) refine it for an STT that listens for what is expected
    (:class:`~voicepipe.providers.base.STTHint`); ``language`` is the
    language of the caller's answer.
    """

    text: str | AsyncIterable[str] = ""
    end_session: bool = False
    events: Sequence[Event] = ()
    finish_reason: str = "policy"
    expecting: str | None = None
    options: tuple[str, ...] = ()
    confirmed: bool = False
    language: str = "en"

    def hint(self) -> STTHint | None:
        """What an STT may listen for in the next turn, or None for free speech."""
        if self.expecting is None:
            return None
        return STTHint(self.expecting, self.options, self.language, self.confirmed)


async def _discard(event: Event) -> None:
    """The default ``emit`` of a context made outside a pipeline (tests)."""


@dataclass(slots=True)
class PolicyContext:
    """What the pipeline lends a policy for one turn.

    ``emit`` sends an event to the session's client at once, in order with
    the reply (a ``tool_call`` while the reply is being produced, say).
    ``task_group`` (None outside a pipeline) lives as long as the reply,
    inside its cancel scope: work started there runs beside the reply text
    (a tool call while a filler line is spoken), is cancelled on barge-in
    like the reply, and is waited for before the next turn (shield what
    must finish, with :meth:`shield_from_cut`). ``tool_ms`` is the policy's
    tool time, for ``metrics``.
    ``alternatives`` are other readings of the user's turn the STT found,
    less sure than the text it reported (best first; see
    :class:`~voicepipe.providers.base.Expectation`): a value taken from one
    should be confirmed with the caller.
    """

    llm: LLM
    usage: Usage = field(default_factory=Usage)
    emit: Callable[[Event], Awaitable[None]] = _discard
    task_group: TaskGroup | None = None
    tool_ms: float | None = None
    alternatives: tuple[str, ...] = ()
    outlast: Callable[[CancelScope], None] | None = None  # the session's (shield_from_cut)

    def shield_from_cut(self) -> CancelScope:
        """A cancel scope for work a cut must let finish but the session's end must stop.

        Shielded, so a barge-in (which cancels the reply) does not reach
        inside: a tool round finishes and its results stay in history. The
        session ending (the caller left or cancelled it, a provider failed for
        good) cancels it, so such work never holds a closing session for its
        whole timeout. Work that must outlive even that (storing a form
        answer) uses ``anyio.CancelScope(shield=True)`` with a time bound.
        """
        scope = CancelScope(shield=True)
        if self.outlast is not None:
            self.outlast(scope)
        return scope


@runtime_checkable
class Policy(Protocol):
    """Turn logic. Implement these three methods to write your own.

    Optionally define ``async def aclose(self) -> None``: the pipeline awaits
    it once when the session ends, however it ends (end of input, a goodbye,
    an error, the caller leaving or cancelling), shielded and for at most a
    couple of seconds. Release there what the session holds (``FormPolicy``
    releases its claim on the form session). To end a session at once from
    ``start`` or ``on_user_turn``, raise
    ``voicepipe.errors.PolicyError(message, recoverable=False)``.
    """

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
