"""The event loop's clock and sleep, without anyio's backend lookup on every call.

``anyio.current_time()`` and ``anyio.sleep()`` find the running backend
first (sniffio's thread-local and context variable, then anyio's table), on
every call; a session reads the clock and sleeps a dozen times a turn. On
asyncio (and uvloop) these go straight to the running loop, which is what
anyio's asyncio backend does after its lookup; elsewhere (trio) they are
anyio's own.
"""

from __future__ import annotations

import asyncio

import anyio

__all__ = ["now", "sleep"]

_running_loop = asyncio._get_running_loop  # None when no asyncio loop runs in this thread


def now() -> float:
    """The event loop's clock (seconds), as ``anyio.current_time()``."""
    loop = _running_loop()
    return loop.time() if loop is not None else anyio.current_time()


async def sleep(delay: float) -> None:
    """Sleep ``delay`` seconds (0: one trip through the event loop), as ``anyio.sleep``."""
    if _running_loop() is None:
        await anyio.sleep(delay)
    elif not delay >= 0:
        raise ValueError("delay must be a non-negative number")
    else:
        await asyncio.sleep(delay)
