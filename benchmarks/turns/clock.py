"""Virtual time for both anyio backends: a scenario of minutes runs in milliseconds, exactly.

Every sleep, timeout and ``anyio.current_time()`` inside the run follows a
clock that jumps to the next timer whenever every task is waiting. trio has
this built in (``MockClock(autojump_threshold=0)``); for asyncio,
:class:`VirtualTimeLoop` does the same with a selector that, instead of
blocking for ``timeout``, moves the loop's clock on by it.
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio

__all__ = ["BACKENDS", "VirtualTimeLoop", "backend_options", "run_virtual"]

T = TypeVar("T")
BACKENDS = ("asyncio", "trio")


class _JumpingSelector(selectors.DefaultSelector):
    """A selector that polls, then advances the loop's clock instead of sleeping."""

    loop: VirtualTimeLoop

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready: list[tuple[selectors.SelectorKey, int]] = super().select(0)
        if ready or timeout == 0:
            return ready
        if timeout is None:  # no timer at all: only real I/O can wake the loop
            return list(super().select(None))
        self.loop.advance(timeout)
        return []


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An asyncio loop whose ``time()`` is virtual and jumps to the next timer."""

    def __init__(self) -> None:
        selector = _JumpingSelector()
        super().__init__(selector=selector)
        selector.loop = self
        self._virtual = 0.0

    def time(self) -> float:
        return self._virtual

    def advance(self, seconds: float) -> None:
        self._virtual += seconds


def backend_options(backend: str) -> dict[str, Any]:
    """anyio backend options that put ``backend`` on virtual time."""
    if backend == "trio":
        from trio.testing import MockClock

        return {"clock": MockClock(autojump_threshold=0)}
    return {"loop_factory": VirtualTimeLoop}


def run_virtual(func: Callable[[], Awaitable[T]], backend: str = "asyncio") -> T:
    """``anyio.run(func)`` on ``backend`` in virtual time."""

    async def main() -> T:
        return await func()

    return anyio.run(main, backend=backend, backend_options=backend_options(backend))
