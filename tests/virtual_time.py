"""Virtual time for session fuzzing: sleeps take no wall time, on asyncio and trio.

trio has it built in (``MockClock(autojump_threshold=0)``). For asyncio,
:class:`VirtualTimeLoop` is a selector loop whose clock jumps to the next
timer whenever nothing is ready to run, so ``anyio.sleep(30)`` returns at
once with ``anyio.current_time()`` 30 s later.
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio

T = TypeVar("T")


class _JumpingSelector(selectors.DefaultSelector):
    """Never waits on a timeout: it reports no I/O and moves the loop's clock instead."""

    def __init__(self) -> None:
        super().__init__()
        self.loop: VirtualTimeLoop | None = None

    def select(self, timeout: float | None = None) -> list[Any]:
        ready = super().select(0)
        if ready or timeout is None or timeout <= 0 or self.loop is None:
            if not ready and timeout is None:  # only threads can wake us: really wait
                return super().select(None)
            return ready
        self.loop.now += timeout
        return []


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An asyncio loop on a virtual clock (see the module docstring)."""

    def __init__(self) -> None:
        selector = _JumpingSelector()
        super().__init__(selector)
        selector.loop = self
        self.now = 0.0

    def time(self) -> float:
        return self.now


def run(fn: Callable[[], Awaitable[T]], backend: str, *, virtual: bool = True) -> T:
    """Run ``fn`` on ``backend`` (``"asyncio"`` or ``"trio"``), on virtual time if asked."""
    options: dict[str, Any] = {}
    if virtual and backend == "trio":
        import trio.testing

        options["clock"] = trio.testing.MockClock(autojump_threshold=0)
    elif virtual:
        options["loop_factory"] = VirtualTimeLoop
    return anyio.run(fn, backend=backend, backend_options=options)
