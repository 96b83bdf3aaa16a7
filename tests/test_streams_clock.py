"""voicepipe.clock: the loop's clock and sleep, as anyio's, without its per-call lookup."""

from __future__ import annotations

import math

import anyio
import pytest

from voicepipe import clock

pytestmark = pytest.mark.anyio


async def test_now_is_the_event_loops_clock() -> None:
    before = anyio.current_time()
    now = clock.now()
    after = anyio.current_time()
    assert before <= now <= after


async def test_sleep_waits_on_the_loops_clock_and_a_cancel_stops_it() -> None:
    started = clock.now()
    await clock.sleep(0.01)
    assert clock.now() - started >= 0.01
    with anyio.move_on_after(0.01) as scope:
        await clock.sleep(math.inf)
    assert scope.cancelled_caught


async def test_sleep_zero_is_a_checkpoint() -> None:
    reached = False
    with anyio.CancelScope() as scope:
        scope.cancel()
        await clock.sleep(0)  # a trip through the loop: the cancellation lands here
        reached = True
    assert scope.cancelled_caught and not reached


@pytest.mark.parametrize("delay", [-1.0, math.nan, -math.inf])
async def test_a_negative_or_nan_delay_is_refused_as_anyio_does(delay: float) -> None:
    with pytest.raises(ValueError, match="non-negative"):
        await clock.sleep(delay)
