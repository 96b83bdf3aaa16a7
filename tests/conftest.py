"""Shared test configuration.

Core tests run on both anyio backends. A test module whose provider is
asyncio-only (a vendor SDK) overrides ``anyio_backend`` with
``pytestmark = pytest.mark.parametrize("anyio_backend", ["asyncio"])``.
"""

from __future__ import annotations

import pytest


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)
