"""The embedded default store: one SQLite file in WAL mode.

Every database call runs in a worker thread (``anyio.to_thread.run_sync``) so
the event loop never blocks on disk. One connection per store, used by one
thread at a time; several stores (or processes) may open the same file, and
SQLite's locking plus the session lease (see :mod:`voicepipe.forms.store`)
keep them from corrupting a session.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import anyio.to_thread

from voicepipe.forms.store import (
    SCHEMA_VERSION,
    Answer,
    Attempt,
    Clock,
    SessionRecord,
    SessionRow,
    StoreError,
    check_claim,
    check_lease_seconds,
    check_write,
    dump_extracted,
    dump_value,
    lease_expiry,
    load_value,
    utc_now,
)

__all__ = ["SQLiteFormStore"]

T = TypeVar("T")

# Times are stored as float seconds since the epoch (UTC).
_MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        """CREATE TABLE voicepipe_form_sessions (
            session_id TEXT PRIMARY KEY,
            form_name TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('in_progress', 'complete')),
            language TEXT NOT NULL,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            completed_at REAL,
            lease_owner TEXT,
            lease_expires_at REAL
        )""",
        """CREATE TABLE voicepipe_form_answers (
            session_id TEXT NOT NULL
                REFERENCES voicepipe_form_sessions (session_id) ON DELETE CASCADE,
            field TEXT NOT NULL,
            value TEXT,
            skipped INTEGER NOT NULL DEFAULT 0,
            transcript TEXT NOT NULL,
            answered_at REAL NOT NULL,
            PRIMARY KEY (session_id, field)
        )""",
        """CREATE TABLE voicepipe_form_attempts (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            session_id TEXT NOT NULL
                REFERENCES voicepipe_form_sessions (session_id) ON DELETE CASCADE,
            field TEXT NOT NULL,
            transcript TEXT NOT NULL,
            value TEXT,
            accepted INTEGER NOT NULL,
            reason TEXT NOT NULL,
            created_at REAL NOT NULL
        )""",
        "CREATE INDEX voicepipe_form_attempts_session ON voicepipe_form_attempts (session_id, id)",
    ),
}


def _ts(t: datetime) -> float:
    return t.timestamp()


def _dt(x: float | None) -> datetime | None:
    return None if x is None else datetime.fromtimestamp(x, UTC)


class SQLiteFormStore:
    """A :class:`~voicepipe.forms.FormStore` in one SQLite file (created if missing).

    ``lease_seconds`` is how long a session stays claimed after its last write
    when its owner disappears without releasing it (a crashed process).
    ``busy_timeout`` is how long a write waits for another process's
    transaction on the same file. ``clock`` is for tests. Use it as an async
    context manager, or call :meth:`aclose`.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        lease_seconds: float = 300.0,
        busy_timeout: float = 10.0,
        clock: Clock = utc_now,
    ) -> None:
        self.path = str(path)
        self.lease_seconds = check_lease_seconds(lease_seconds)
        self.busy_timeout = busy_timeout
        self.clock = clock
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        self._closed = False

    def __repr__(self) -> str:
        return f"SQLiteFormStore({self.path!r})"

    async def __aenter__(self) -> SQLiteFormStore:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # --- plumbing ---------------------------------------------------------------

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(connection)`` in a worker thread, inside a transaction if it writes."""

        def call() -> T:
            with self._lock:
                if self._closed:
                    raise StoreError(f"{self!r} is closed")
                try:
                    if self._conn is None:
                        self._conn = self._connect()
                    return fn(self._conn)
                except sqlite3.Error as exc:  # locked, full disk, not a database, ...
                    raise StoreError(f"{self.path}: {exc}") from exc

        return await anyio.to_thread.run_sync(call)

    def _connect(self) -> sqlite3.Connection:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(
            self.path, timeout=self.busy_timeout, isolation_level=None, check_same_thread=False
        )
        try:
            self._set_wal(conn)
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
            self._migrate(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def _set_wal(self, conn: sqlite3.Connection) -> None:
        """Switch to WAL. Two connections doing it at once on a new file can get
        "database is locked" without the busy handler being called: retry."""
        deadline = time.monotonic() + self.busy_timeout
        delay = 0.005
        while True:
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
            time.sleep(delay)  # in a worker thread, never on the event loop
            delay = min(delay * 2, 0.1)

    def _migrate(self, conn: sqlite3.Connection) -> None:
        with _transaction(conn):
            conn.execute(
                "CREATE TABLE IF NOT EXISTS voicepipe_schema "
                "(component TEXT PRIMARY KEY, version INTEGER NOT NULL)"
            )
            row = conn.execute(
                "SELECT version FROM voicepipe_schema WHERE component = 'forms'"
            ).fetchone()
            current = 0 if row is None else int(row[0])
            if current > SCHEMA_VERSION:
                raise StoreError(
                    f"{self.path}: form store schema version {current} is newer than this "
                    f"voicepipe supports ({SCHEMA_VERSION}); upgrade voicepipe"
                )
            for version in range(current + 1, SCHEMA_VERSION + 1):
                for statement in _MIGRATIONS[version]:
                    conn.execute(statement)
            if current < SCHEMA_VERSION:
                conn.execute(
                    "INSERT INTO voicepipe_schema (component, version) VALUES ('forms', ?) "
                    "ON CONFLICT (component) DO UPDATE SET version = excluded.version",
                    (SCHEMA_VERSION,),
                )

    async def aclose(self) -> None:
        def close() -> None:
            with self._lock:
                self._closed = True
                if self._conn is not None:
                    self._conn.close()
                    self._conn = None

        await anyio.to_thread.run_sync(close)

    # --- the FormStore protocol -------------------------------------------------

    async def claim(
        self, session_id: str, *, form: str, language: str, owner: str
    ) -> SessionRecord:
        def claim(conn: sqlite3.Connection) -> SessionRecord:
            now = self.clock()
            with _transaction(conn):
                row = _session_row(conn, session_id)
                expires = _ts(lease_expiry(now, self.lease_seconds))
                if row is None:
                    conn.execute(
                        "INSERT INTO voicepipe_form_sessions (session_id, form_name, status, "
                        "language, created_at, updated_at, lease_owner, lease_expires_at) "
                        "VALUES (?, ?, 'in_progress', ?, ?, ?, ?, ?)",
                        (session_id, form, language, _ts(now), _ts(now), owner, expires),
                    )
                else:
                    check_claim(row, session_id, form, owner, now)
                    conn.execute(
                        "UPDATE voicepipe_form_sessions SET lease_owner = ?, "
                        "lease_expires_at = ?, language = ?, updated_at = ? WHERE session_id = ?",
                        (owner, expires, language, _ts(now), session_id),
                    )
                record = _load(conn, session_id)
            assert record is not None
            return record

        return await self._run(claim)

    async def record(
        self, session_id: str, owner: str, attempt: Attempt, answer: Answer | None = None
    ) -> None:
        def record(conn: sqlite3.Connection) -> None:
            now = self.clock()
            with _transaction(conn):
                _check_owner(conn, session_id, owner, now)
                conn.execute(
                    "UPDATE voicepipe_form_sessions SET updated_at = ?, lease_expires_at = ? "
                    "WHERE session_id = ?",
                    (_ts(now), _ts(lease_expiry(now, self.lease_seconds)), session_id),
                )
                conn.execute(
                    "INSERT INTO voicepipe_form_attempts (session_id, field, transcript, value, "
                    "accepted, reason, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        session_id,
                        attempt.field,
                        attempt.transcript,
                        dump_extracted(attempt.value),
                        int(attempt.accepted),
                        attempt.reason,
                        _ts(now),
                    ),
                )
                if answer is not None:
                    conn.execute(
                        "INSERT INTO voicepipe_form_answers (session_id, field, value, skipped, "
                        "transcript, answered_at) VALUES (?, ?, ?, ?, ?, ?) "
                        "ON CONFLICT (session_id, field) DO UPDATE SET value = excluded.value, "
                        "skipped = excluded.skipped, transcript = excluded.transcript, "
                        "answered_at = excluded.answered_at",
                        (
                            session_id,
                            answer.field,
                            None if answer.skipped else dump_value(answer.value),
                            int(answer.skipped),
                            answer.transcript,
                            _ts(now),
                        ),
                    )

        await self._run(record)

    async def complete(self, session_id: str, owner: str) -> SessionRecord:
        def complete(conn: sqlite3.Connection) -> SessionRecord:
            now = self.clock()
            with _transaction(conn):
                _check_owner(conn, session_id, owner, now)
                conn.execute(
                    "UPDATE voicepipe_form_sessions SET status = 'complete', updated_at = ?, "
                    "completed_at = ?, lease_owner = NULL, lease_expires_at = NULL "
                    "WHERE session_id = ?",
                    (_ts(now), _ts(now), session_id),
                )
                record = _load(conn, session_id)
            assert record is not None
            return record

        return await self._run(complete)

    async def release(self, session_id: str, owner: str) -> None:
        def release(conn: sqlite3.Connection) -> None:
            with _transaction(conn):
                conn.execute(
                    "UPDATE voicepipe_form_sessions SET lease_owner = NULL, "
                    "lease_expires_at = NULL WHERE session_id = ? AND lease_owner = ?",
                    (session_id, owner),
                )

        await self._run(release)

    async def get(self, session_id: str) -> SessionRecord | None:
        def get(conn: sqlite3.Connection) -> SessionRecord | None:
            with _transaction(conn, write=False):
                return _load(conn, session_id)

        return await self._run(get)

    async def attempts(self, session_id: str) -> list[Attempt]:
        def attempts(conn: sqlite3.Connection) -> list[Attempt]:
            rows = conn.execute(
                "SELECT field, transcript, value, accepted, reason, created_at "
                "FROM voicepipe_form_attempts WHERE session_id = ? ORDER BY id",
                (session_id,),
            ).fetchall()
            return [Attempt(f, t, load_value(v), bool(a), r, _dt(c)) for f, t, v, a, r, c in rows]

        return await self._run(attempts)


class _transaction:
    """``BEGIN IMMEDIATE`` (or a read transaction) ... ``COMMIT``, rolled back on error."""

    def __init__(self, conn: sqlite3.Connection, *, write: bool = True) -> None:
        self.conn = conn
        self.write = write

    def __enter__(self) -> None:
        self.conn.execute("BEGIN IMMEDIATE" if self.write else "BEGIN")

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if exc_type is None:
            self.conn.execute("COMMIT")
        else:
            self.conn.execute("ROLLBACK")


def _session_row(conn: sqlite3.Connection, session_id: str) -> SessionRow | None:
    row = conn.execute(
        "SELECT form_name, status, lease_owner, lease_expires_at "
        "FROM voicepipe_form_sessions WHERE session_id = ?",
        (session_id,),
    ).fetchone()
    if row is None:
        return None
    return SessionRow(row[0], row[1], row[2], _dt(row[3]))


def _check_owner(conn: sqlite3.Connection, session_id: str, owner: str, now: datetime) -> None:
    row = _session_row(conn, session_id)
    if row is None:
        raise StoreError(f"no form session {session_id!r}; claim it first")
    check_write(row, session_id, owner, now)


def _load(conn: sqlite3.Connection, session_id: str) -> SessionRecord | None:
    row = conn.execute(
        "SELECT form_name, status, language, created_at, updated_at, completed_at "
        "FROM voicepipe_form_sessions WHERE session_id = ?",
        (session_id,),
    ).fetchone()
    if row is None:
        return None
    answers: dict[str, Answer] = {}
    for field, value, skipped, transcript, at in conn.execute(
        "SELECT field, value, skipped, transcript, answered_at FROM voicepipe_form_answers "
        "WHERE session_id = ? ORDER BY answered_at, field",
        (session_id,),
    ):
        answers[field] = Answer(field, load_value(value), transcript, bool(skipped), _dt(at))
    created, updated = _dt(row[3]), _dt(row[4])
    assert created is not None
    assert updated is not None
    return SessionRecord(
        session_id=session_id,
        form=row[0],
        status=row[1],
        language=row[2],
        created_at=created,
        updated_at=updated,
        completed_at=_dt(row[5]),
        answers=answers,
    )
