"""A PostgreSQL store on asyncpg, for several processes or machines sharing sessions.

Install the extra: ``pip install 'voicepipe[postgres]'``. asyncpg is imported
when the store first connects, so ``import voicepipe`` never needs it. asyncpg
runs on asyncio only (not trio).

Lease times come from the ``clock`` of the process writing, so machines
sharing a database need clocks in sync (NTP) to well within ``lease_seconds``.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import anyio

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

if TYPE_CHECKING:
    from datetime import datetime

__all__ = ["PostgresFormStore"]

T = TypeVar("T")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")

_MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        """CREATE TABLE {s}voicepipe_form_sessions (
            session_id TEXT PRIMARY KEY,
            form_name TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('in_progress', 'complete')),
            language TEXT NOT NULL,
            created_at TIMESTAMPTZ NOT NULL,
            updated_at TIMESTAMPTZ NOT NULL,
            completed_at TIMESTAMPTZ,
            lease_owner TEXT,
            lease_expires_at TIMESTAMPTZ
        )""",
        """CREATE TABLE {s}voicepipe_form_answers (
            session_id TEXT NOT NULL
                REFERENCES {s}voicepipe_form_sessions (session_id) ON DELETE CASCADE,
            field TEXT NOT NULL,
            value JSONB,
            skipped BOOLEAN NOT NULL DEFAULT FALSE,
            transcript TEXT NOT NULL,
            answered_at TIMESTAMPTZ NOT NULL,
            PRIMARY KEY (session_id, field)
        )""",
        """CREATE TABLE {s}voicepipe_form_attempts (
            id BIGSERIAL PRIMARY KEY,
            session_id TEXT NOT NULL
                REFERENCES {s}voicepipe_form_sessions (session_id) ON DELETE CASCADE,
            field TEXT NOT NULL,
            transcript TEXT NOT NULL,
            value JSONB,
            accepted BOOLEAN NOT NULL,
            reason TEXT NOT NULL,
            created_at TIMESTAMPTZ NOT NULL
        )""",
        "CREATE INDEX voicepipe_form_attempts_session "
        "ON {s}voicepipe_form_attempts (session_id, id)",
    ),
}


def redact_dsn(dsn: str) -> str:
    """The DSN with its password, in the userinfo or the query (asyncpg reads both),
    replaced by ``***`` (for reprs and error messages)."""
    try:
        parts = urlsplit(dsn)
    except ValueError:
        return "<dsn>"
    if parts.scheme not in ("postgres", "postgresql"):
        return "<dsn>"  # not a URL: where a password is in it is anyone's guess
    if parts.password is not None:
        netloc = parts.netloc.rsplit("@", 1)
        user = (parts.username or "") + ":***"
        parts = parts._replace(netloc=f"{user}@{netloc[-1]}")
    if parts.query:
        query = [(k, "***" if k.casefold() == "password" else v) for k, v in parse_qsl(parts.query)]
        parts = parts._replace(query=urlencode(query, safe="*"))
    return urlunsplit(parts)


class PostgresFormStore:
    """A :class:`~voicepipe.forms.FormStore` in PostgreSQL (asyncpg connection pool).

    ``dsn`` is a ``postgresql://user:password@host:port/db`` URL. ``schema``
    puts the tables in that PostgreSQL schema (created if missing) instead of
    the connection's default. ``lease_seconds`` and ``clock`` as for
    :class:`~voicepipe.forms.SQLiteFormStore`; ``min_size``/``max_size`` size the
    pool. ``timeout`` bounds every wait on the database (connecting, a pooled
    connection, each statement, a lock held elsewhere): the form policy shields
    its writes from cancellation, so an unbounded wait would hold a session
    open for ever. The pool is opened on first use; close it with
    :meth:`aclose` or ``async with``.
    """

    def __init__(
        self,
        dsn: str,
        *,
        schema: str | None = None,
        lease_seconds: float = 300.0,
        min_size: int = 1,
        max_size: int = 10,
        clock: Clock = utc_now,
        timeout: float = 10.0,
    ) -> None:
        if schema is not None and not _IDENT.match(schema):
            raise ValueError(f"schema must be a plain SQL identifier, not {schema!r}")
        self._dsn = dsn
        self.schema = schema
        self.lease_seconds = check_lease_seconds(lease_seconds)
        self.min_size = min_size
        self.max_size = max_size
        self.clock = clock
        self.timeout = timeout
        self._prefix = f'"{schema}".' if schema else ""
        self._pool: Any = None
        self._pool_lock = anyio.Lock()
        self._closed = False

    def __repr__(self) -> str:
        return f"PostgresFormStore({redact_dsn(self._dsn)!r})"

    async def __aenter__(self) -> PostgresFormStore:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def _sql(self, text: str) -> str:
        return text.replace("{s}", self._prefix)

    # --- plumbing ---------------------------------------------------------------

    async def _get_pool(self) -> Any:
        async with self._pool_lock:
            if self._closed:
                raise StoreError(f"{self!r} is closed")
            if self._pool is None:
                try:
                    import asyncpg
                except ImportError as exc:
                    raise StoreError(
                        "PostgresFormStore needs asyncpg: pip install 'voicepipe[postgres]'"
                    ) from exc
                try:
                    pool = await asyncpg.create_pool(
                        self._dsn,
                        min_size=self.min_size,
                        max_size=self.max_size,
                        timeout=self.timeout,
                        command_timeout=self.timeout,
                    )
                except TimeoutError:
                    raise self._stalled() from None
                except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                    raise StoreError(
                        f"cannot connect to PostgreSQL at {redact_dsn(self._dsn)}: "
                        f"{type(exc).__name__}: {exc}"
                    ) from exc
                try:
                    async with pool.acquire(timeout=self.timeout) as conn:
                        await self._migrate(conn)
                except BaseException as exc:
                    pool.terminate()
                    if isinstance(exc, TimeoutError):
                        raise self._stalled() from None
                    raise
                self._pool = pool
            return self._pool

    async def _migrate(self, conn: Any) -> None:
        async with conn.transaction():
            # One migrator at a time across every process sharing the database.
            await conn.execute(
                "SELECT pg_advisory_xact_lock(hashtext($1))", f"voicepipe_forms:{self._prefix}"
            )
            if self.schema:
                await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
            await conn.execute(
                self._sql(
                    "CREATE TABLE IF NOT EXISTS {s}voicepipe_schema "
                    "(component TEXT PRIMARY KEY, version INTEGER NOT NULL)"
                )
            )
            current = await conn.fetchval(
                self._sql("SELECT version FROM {s}voicepipe_schema WHERE component = 'forms'")
            )
            current = int(current or 0)
            if current > SCHEMA_VERSION:
                raise StoreError(
                    f"form store schema version {current} is newer than this voicepipe "
                    f"supports ({SCHEMA_VERSION}); upgrade voicepipe"
                )
            for version in range(current + 1, SCHEMA_VERSION + 1):
                for statement in _MIGRATIONS[version]:
                    await conn.execute(self._sql(statement))
            if current < SCHEMA_VERSION:
                await conn.execute(
                    self._sql(
                        "INSERT INTO {s}voicepipe_schema (component, version) VALUES ('forms', $1) "
                        "ON CONFLICT (component) DO UPDATE SET version = excluded.version"
                    ),
                    SCHEMA_VERSION,
                )

    async def _transaction(self, fn: Callable[[Any], Awaitable[T]]) -> T:
        import asyncpg

        pool = await self._get_pool()
        try:
            async with pool.acquire(timeout=self.timeout) as conn, conn.transaction():
                return await fn(conn)
        except TimeoutError:
            raise self._stalled() from None
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise StoreError(
                f"PostgreSQL at {redact_dsn(self._dsn)}: {type(exc).__name__}: {exc}"
            ) from exc

    def _stalled(self) -> StoreError:
        return StoreError(
            f"PostgreSQL at {redact_dsn(self._dsn)} did not answer within {self.timeout:g} s; "
            "check the database and the network (a lock held by another connection waits too)"
        )

    async def aclose(self) -> None:
        async with self._pool_lock:
            self._closed = True
            pool, self._pool = self._pool, None
        if pool is not None:
            with anyio.move_on_after(self.timeout, shield=True) as scope:
                await pool.close()  # waits for the server's goodbye...
            if scope.cancelled_caught:
                pool.terminate()  # ...which a stalled server never sends

    async def _session_row(self, conn: Any, session_id: str) -> SessionRow | None:
        row = await conn.fetchrow(
            self._sql(
                "SELECT form_name, status, lease_owner, lease_expires_at "
                "FROM {s}voicepipe_form_sessions WHERE session_id = $1 FOR UPDATE"
            ),
            session_id,
        )
        return None if row is None else SessionRow(*row)

    async def _check_owner(self, conn: Any, session_id: str, owner: str, now: datetime) -> None:
        row = await self._session_row(conn, session_id)
        if row is None:
            raise StoreError(f"no form session {session_id!r}; claim it first")
        check_write(row, session_id, owner, now)

    async def _load(self, conn: Any, session_id: str) -> SessionRecord | None:
        row = await conn.fetchrow(
            self._sql(
                "SELECT form_name, status, language, created_at, updated_at, completed_at "
                "FROM {s}voicepipe_form_sessions WHERE session_id = $1"
            ),
            session_id,
        )
        if row is None:
            return None
        answers: dict[str, Answer] = {}
        for r in await conn.fetch(
            self._sql(
                "SELECT field, value::text, skipped, transcript, answered_at "
                "FROM {s}voicepipe_form_answers WHERE session_id = $1 ORDER BY answered_at, field"
            ),
            session_id,
        ):
            answers[r[0]] = Answer(r[0], load_value(r[1]), r[3], r[2], r[4])
        return SessionRecord(session_id, row[0], row[1], row[2], row[3], row[4], row[5], answers)

    # --- the FormStore protocol -------------------------------------------------

    async def claim(
        self, session_id: str, *, form: str, language: str, owner: str
    ) -> SessionRecord:
        async def claim(conn: Any) -> SessionRecord:
            now = self.clock()
            expires = lease_expiry(now, self.lease_seconds)
            row = await self._session_row(conn, session_id)
            if row is None:
                inserted = await conn.fetchval(
                    self._sql(
                        "INSERT INTO {s}voicepipe_form_sessions (session_id, form_name, status, "
                        "language, created_at, updated_at, lease_owner, lease_expires_at) "
                        "VALUES ($1, $2, 'in_progress', $3, $4, $4, $5, $6) "
                        "ON CONFLICT (session_id) DO NOTHING RETURNING session_id"
                    ),
                    session_id,
                    form,
                    language,
                    now,
                    owner,
                    expires,
                )
                if inserted is None:  # created by someone else since our SELECT
                    row = await self._session_row(conn, session_id)
            if row is not None:
                check_claim(row, session_id, form, owner, now)
                await conn.execute(
                    self._sql(
                        "UPDATE {s}voicepipe_form_sessions SET lease_owner = $2, "
                        "lease_expires_at = $3, language = $4, updated_at = $5 "
                        "WHERE session_id = $1"
                    ),
                    session_id,
                    owner,
                    expires,
                    language,
                    now,
                )
            record = await self._load(conn, session_id)
            assert record is not None
            return record

        return await self._transaction(claim)

    async def record(
        self, session_id: str, owner: str, attempt: Attempt, answer: Answer | None = None
    ) -> None:
        async def record(conn: Any) -> None:
            now = self.clock()
            await self._check_owner(conn, session_id, owner, now)
            await conn.execute(
                self._sql(
                    "UPDATE {s}voicepipe_form_sessions SET updated_at = $2, lease_expires_at = $3 "
                    "WHERE session_id = $1"
                ),
                session_id,
                now,
                lease_expiry(now, self.lease_seconds),
            )
            await conn.execute(
                self._sql(
                    "INSERT INTO {s}voicepipe_form_attempts (session_id, field, transcript, "
                    "value, accepted, reason, created_at) "
                    "VALUES ($1, $2, $3, $4::jsonb, $5, $6, $7)"
                ),
                session_id,
                attempt.field,
                attempt.transcript,
                dump_extracted(attempt.value),
                attempt.accepted,
                attempt.reason,
                now,
            )
            if answer is not None:
                await conn.execute(
                    self._sql(
                        "INSERT INTO {s}voicepipe_form_answers (session_id, field, value, "
                        "skipped, transcript, answered_at) VALUES ($1, $2, $3::jsonb, $4, $5, $6) "
                        "ON CONFLICT (session_id, field) DO UPDATE SET value = excluded.value, "
                        "skipped = excluded.skipped, transcript = excluded.transcript, "
                        "answered_at = excluded.answered_at"
                    ),
                    session_id,
                    answer.field,
                    None if answer.skipped else dump_value(answer.value),
                    answer.skipped,
                    answer.transcript,
                    now,
                )

        await self._transaction(record)

    async def complete(self, session_id: str, owner: str) -> SessionRecord:
        async def complete(conn: Any) -> SessionRecord:
            now = self.clock()
            await self._check_owner(conn, session_id, owner, now)
            await conn.execute(
                self._sql(
                    "UPDATE {s}voicepipe_form_sessions SET status = 'complete', updated_at = $2, "
                    "completed_at = $2, lease_owner = NULL, lease_expires_at = NULL "
                    "WHERE session_id = $1"
                ),
                session_id,
                now,
            )
            record = await self._load(conn, session_id)
            assert record is not None
            return record

        return await self._transaction(complete)

    async def release(self, session_id: str, owner: str) -> None:
        async def release(conn: Any) -> None:
            await conn.execute(
                self._sql(
                    "UPDATE {s}voicepipe_form_sessions SET lease_owner = NULL, "
                    "lease_expires_at = NULL WHERE session_id = $1 AND lease_owner = $2"
                ),
                session_id,
                owner,
            )

        await self._transaction(release)

    async def get(self, session_id: str) -> SessionRecord | None:
        async def get(conn: Any) -> SessionRecord | None:
            return await self._load(conn, session_id)

        return await self._transaction(get)

    async def attempts(self, session_id: str) -> list[Attempt]:
        async def attempts(conn: Any) -> list[Attempt]:
            rows = await conn.fetch(
                self._sql(
                    "SELECT field, transcript, value::text, accepted, reason, created_at "
                    "FROM {s}voicepipe_form_attempts WHERE session_id = $1 ORDER BY id"
                ),
                session_id,
            )
            return [Attempt(r[0], r[1], load_value(r[2]), r[3], r[4], r[5]) for r in rows]

        return await self._transaction(attempts)
