"""Helpers for the form tests: a settable clock, store factories on SQLite and
PostgreSQL, and the intake form. The shared fixtures are in ``conftest.py``.

The PostgreSQL stores need ``VOICEPIPE_TEST_POSTGRES_DSN`` (``source
.ci/postgres.sh``); tests that use them skip without it.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from voicepipe.forms import Field, FieldType, Form, FormStore, SQLiteFormStore

POSTGRES_DSN = os.environ.get("VOICEPIPE_TEST_POSTGRES_DSN")
SKIP_NO_POSTGRES = pytest.mark.skipif(
    not POSTGRES_DSN,
    reason="VOICEPIPE_TEST_POSTGRES_DSN is not set: `source .ci/postgres.sh` starts a local "
    "PostgreSQL and sets it",
)
POSTGRES = [pytest.mark.postgres, SKIP_NO_POSTGRES]
ASYNCIO_ONLY = pytest.mark.parametrize("anyio_backend", ["asyncio"])
LEASE = 60.0

INTAKE = Form(
    name="intake",
    title="intake form",
    fields=(
        Field(name="age", question="How old are you?", type=FieldType.INTEGER, min=0, max=130),
        # No read-back here (e-mail and phone confirm by default): these tests are
        # about the flow and the stores; confirmation has tests of its own.
        Field(
            name="email",
            question="What is your e-mail address?",
            type=FieldType.EMAIL,
            confirm=False,
        ),
        Field(
            name="phone", question="What is your phone number?", type=FieldType.PHONE, confirm=False
        ),
    ),
)


class FakeClock:
    """A clock the test moves by hand (lease expiry without waiting)."""

    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


StoreFactory = Callable[[], FormStore]


async def sqlite_factory(
    tmp_path: Path, clock: FakeClock, name: str = "forms.db"
) -> AsyncIterator[StoreFactory]:
    """Yield a function opening new connections (stores) to one SQLite file."""
    opened: list[SQLiteFormStore] = []

    def make() -> FormStore:
        store = SQLiteFormStore(tmp_path / name, lease_seconds=LEASE, clock=clock)
        opened.append(store)
        return store

    try:
        yield make
    finally:
        for store in opened:
            await store.aclose()


async def postgres_factory(clock: FakeClock) -> AsyncIterator[StoreFactory]:
    """Yield a function opening new pools to one fresh PostgreSQL schema (dropped after)."""
    import asyncpg

    from voicepipe.forms import PostgresFormStore

    assert POSTGRES_DSN
    schema = f"vp_test_{uuid.uuid4().hex[:12]}"
    opened: list[PostgresFormStore] = []

    def make() -> FormStore:
        store = PostgresFormStore(
            POSTGRES_DSN, schema=schema, lease_seconds=LEASE, clock=clock, min_size=1, max_size=4
        )
        opened.append(store)
        return store

    try:
        yield make
    finally:
        for store in opened:
            await store.aclose()
        conn = await asyncpg.connect(POSTGRES_DSN)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()


def parametrize_stores(metafunc: pytest.Metafunc) -> None:
    """``pytest_generate_tests`` for modules whose tests take ``store_kind``: they run on
    SQLite (asyncio and trio) and PostgreSQL (asyncio only: asyncpg)."""
    if "store_kind" in metafunc.fixturenames:
        metafunc.parametrize(
            ("anyio_backend", "store_kind"),
            [
                pytest.param("asyncio", "sqlite", id="sqlite-asyncio"),
                pytest.param("trio", "sqlite", id="sqlite-trio"),
                pytest.param("asyncio", "postgres", id="postgres", marks=POSTGRES),
            ],
        )


async def open_stores(
    store_kind: str, tmp_path: Path, clock: FakeClock
) -> AsyncIterator[StoreFactory]:
    factory = sqlite_factory(tmp_path, clock) if store_kind == "sqlite" else postgres_factory(clock)
    async for make in factory:
        yield make
