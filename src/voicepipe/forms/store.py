"""Where form answers live: the :class:`FormStore` protocol and its record types.

A store keeps three tables: sessions (form name, status, language,
timestamps and the lease below), accepted answers (one row per field, with
the transcript it came from) and an attempt log (every transcript, the value
extracted from it, accepted or rejected, and why).

Concurrency rule: **the second connection is refused.** Claiming a session
(:meth:`FormStore.claim`) takes a *lease*: the claimant's ``owner`` token and
an expiry time (``lease_seconds`` after the last write). While the lease is
held and not expired, another claim of the same session raises
:class:`SessionBusyError` at once instead of waiting (a caller on the phone
should not hang on a silent line). Every write checks the lease and renews it;
a writer whose lease was taken over after expiring gets
:class:`SessionBusyError` and writes nothing. :meth:`FormStore.release` (or
completing the session) ends the lease; a process that crashes without
releasing blocks the session for at most ``lease_seconds``.

A completed session is read-only: claims and writes raise
:class:`SessionCompleteError`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Protocol, runtime_checkable

from voicepipe.errors import VoicepipeError

__all__ = [
    "Answer",
    "Attempt",
    "Clock",
    "FormMismatchError",
    "FormStore",
    "SessionBusyError",
    "SessionCompleteError",
    "SessionRecord",
    "SessionStatus",
    "StoreError",
    "export_json",
    "export_session",
]

SessionStatus = Literal["in_progress", "complete"]
Clock = Callable[[], datetime]
"""Returns the current time as an aware UTC datetime (injectable for tests)."""

SCHEMA_VERSION = 1
"""Version of the store schema this code writes; older schemas are migrated on first use."""


class StoreError(VoicepipeError):
    """A form store cannot do what was asked (see the subclasses)."""


class SessionBusyError(StoreError):
    """Another connection holds the session's lease: this one is refused."""


class SessionCompleteError(StoreError):
    """The session is complete, hence read-only."""


class FormMismatchError(StoreError):
    """The session id belongs to a session of another form."""


@dataclass(frozen=True, slots=True)
class Answer:
    """An accepted answer (or, with ``skipped``, an optional field given up on)."""

    field: str
    value: Any
    transcript: str
    skipped: bool = False
    answered_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Attempt:
    """One line of the attempt log: what was heard, what was extracted, the verdict."""

    field: str
    transcript: str
    value: Any
    accepted: bool
    reason: str = ""
    at: datetime | None = None


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """A session as stored, with its answers keyed by field name."""

    session_id: str
    form: str
    status: SessionStatus
    language: str
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None = None
    answers: dict[str, Answer] = field(default_factory=dict)


@runtime_checkable
class FormStore(Protocol):
    """Durable storage for form sessions. Implementations must be safe to share
    between sessions (and, for :class:`~voicepipe.forms.PostgresFormStore`,
    between processes and machines)."""

    async def claim(
        self, session_id: str, *, form: str, language: str, owner: str
    ) -> SessionRecord:
        """Create the session if it is new, take its lease for ``owner`` and return it.

        Raises :class:`SessionBusyError` if another owner holds an unexpired
        lease, :class:`SessionCompleteError` if the session is complete and
        :class:`FormMismatchError` if it belongs to another form.
        """
        ...

    async def record(
        self, session_id: str, owner: str, attempt: Attempt, answer: Answer | None = None
    ) -> None:
        """Append ``attempt`` to the log and, if given, store ``answer`` (replacing an
        earlier answer to the same field), in one transaction committed before
        this returns. Renews the lease; raises like :meth:`claim` if it is lost."""
        ...

    async def complete(self, session_id: str, owner: str) -> SessionRecord:
        """Mark the session complete (read-only from now on) and end the lease."""
        ...

    async def release(self, session_id: str, owner: str) -> None:
        """End ``owner``'s lease, if it still holds it. Never raises for a lost lease."""
        ...

    async def get(self, session_id: str) -> SessionRecord | None:
        """The session with its answers, or None if there is no such session."""
        ...

    async def attempts(self, session_id: str) -> list[Attempt]:
        """The session's attempt log, oldest first."""
        ...

    async def aclose(self) -> None:
        """Close the store's connections."""
        ...


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class SessionRow:
    """The columns of a session row that decide whether a claim or a write may proceed."""

    form: str
    status: str
    lease_owner: str | None
    lease_expires_at: datetime | None


def check_claim(row: SessionRow, session_id: str, form: str, owner: str, now: datetime) -> None:
    """Raise if ``owner`` may not (re)claim the session in ``row`` at ``now``."""
    if row.form != form:
        raise FormMismatchError(
            f"form session {session_id!r} belongs to form {row.form!r}, not {form!r}"
        )
    check_write(row, session_id, owner, now, claiming=True)


def check_write(
    row: SessionRow, session_id: str, owner: str, now: datetime, *, claiming: bool = False
) -> None:
    """Raise unless ``owner`` may write to the session in ``row`` at ``now``.

    A writer must hold the lease (expired or not, as long as nobody took it
    over); a claimant may take a free or expired lease.
    """
    if row.status == "complete":
        raise SessionCompleteError(f"form session {session_id!r} is complete and read-only")
    if row.lease_owner == owner:
        return
    expired = row.lease_expires_at is None or row.lease_expires_at <= now
    if claiming and (row.lease_owner is None or expired):
        return
    if row.lease_owner is None:
        raise SessionBusyError(
            f"form session {session_id!r} is not claimed by this connection; claim it first"
        )
    until = row.lease_expires_at.isoformat() if row.lease_expires_at else "?"
    raise SessionBusyError(
        f"form session {session_id!r} is in use by another connection (lease until {until}); "
        "this connection is refused"
    )


def lease_expiry(now: datetime, lease_seconds: float) -> datetime:
    return now + timedelta(seconds=lease_seconds)


def check_lease_seconds(lease_seconds: float) -> float:
    if not lease_seconds > 0:
        raise ValueError("lease_seconds must be positive")
    return float(lease_seconds)


def dump_value(value: Any) -> str:
    """A validated answer value as JSON text for the database."""
    return json.dumps(value, ensure_ascii=False, allow_nan=False)


def dump_extracted(value: Any) -> str | None:
    """An extracted (unvalidated) value as JSON text; anything unserialisable as its repr."""
    if value is None:
        return None
    try:
        return json.dumps(value, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError):
        return json.dumps(repr(value), ensure_ascii=False)


def load_value(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _iso(t: datetime | None) -> str | None:
    return None if t is None else t.isoformat()


async def export_session(
    store: FormStore, session_id: str, *, attempts: bool = False
) -> dict[str, Any]:
    """A session as a JSON-ready dict: ``answers`` maps each field to its value
    (None for a skipped field), ``details`` has the transcripts and times, and
    with ``attempts=True`` the whole attempt log is included.

    Raises :class:`KeyError` if there is no such session.
    """
    record = await store.get(session_id)
    if record is None:
        raise KeyError(f"no form session {session_id!r}")
    data: dict[str, Any] = {
        "session_id": record.session_id,
        "form": record.form,
        "status": record.status,
        "language": record.language,
        "created_at": _iso(record.created_at),
        "updated_at": _iso(record.updated_at),
        "completed_at": _iso(record.completed_at),
        "answers": {name: a.value for name, a in record.answers.items()},
        "details": [
            {
                "field": a.field,
                "value": a.value,
                "skipped": a.skipped,
                "transcript": a.transcript,
                "answered_at": _iso(a.answered_at),
            }
            for a in record.answers.values()
        ],
    }
    if attempts:
        data["attempts"] = [
            {
                "field": t.field,
                "transcript": t.transcript,
                "value": t.value,
                "accepted": t.accepted,
                "reason": t.reason,
                "at": _iso(t.at),
            }
            for t in await store.attempts(session_id)
        ]
    return data


async def export_json(
    store: FormStore, session_id: str, *, attempts: bool = False, indent: int | None = 2
) -> str:
    """:func:`export_session` as JSON text."""
    data = await export_session(store, session_id, attempts=attempts)
    return json.dumps(data, ensure_ascii=False, indent=indent)
