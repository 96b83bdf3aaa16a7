"""Shared test configuration.

Core tests run on both anyio backends. A test module whose provider is
asyncio-only (a vendor SDK) overrides ``anyio_backend`` with
``pytestmark = pytest.mark.parametrize("anyio_backend", ["asyncio"])``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.forms_support import FakeClock, StoreFactory, open_stores, parametrize_stores


@pytest.hookimpl(tryfirst=True)  # before anyio_backend's own params are applied
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Tests that take ``store_kind`` run on SQLite (asyncio and trio) and PostgreSQL."""
    parametrize_stores(metafunc)


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def clock() -> FakeClock:
    """A clock the form tests move by hand (lease expiry without waiting)."""
    return FakeClock()


@pytest.fixture
async def stores(store_kind: str, tmp_path: Path, clock: FakeClock) -> AsyncIterator[StoreFactory]:
    """Opens connections to one form store of the parametrized kind."""
    async for make in open_stores(store_kind, tmp_path, clock):
        yield make
