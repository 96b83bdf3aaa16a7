"""Many sessions that leave at random points leave nothing behind (issue 10, "done when").

The full 500-session soak is benchmarks/soak_sessions.py; this runs a shorter
one per backend and asserts no task or file descriptor growth and no memory
growth beyond a few hundred bytes per session (allocator noise).
"""

from __future__ import annotations

import logging

import pytest

from tests.session_soak import soak


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_sessions_that_leave_at_random_points_leave_nothing_behind(
    backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.CRITICAL)
    growth = soak(backend, sessions=110, seed=3)
    assert growth.tasks == 0
    assert growth.fds == 0
    assert growth.bytes_per_session < 1024, growth
