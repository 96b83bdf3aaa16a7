"""Virtual time for session fuzzing: sleeps take no wall time, on asyncio and trio.

trio has it built in (``MockClock(autojump_threshold=0)``). For asyncio,
:class:`VirtualTimeLoop` is a selector loop whose clock jumps to the next
timer whenever nothing is ready to run, so ``anyio.sleep(30)`` returns at
once with ``anyio.current_time()`` 30 s later.

Work in a worker thread (a SQLite store) takes real time the virtual clock
cannot see: while it runs, the clock must not jump past the timeouts that
guard it. Wrap such calls in :func:`real_work`; the clock then waits for the
thread instead of jumping.
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import anyio

T = TypeVar("T")

_busy = 0  # real work (worker threads) in progress: the clock must not jump


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
        if _busy:  # a worker thread will wake the loop when it is done: really wait
            return super().select(None)
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


@asynccontextmanager
async def real_work() -> AsyncIterator[None]:
    """Hold the virtual clock still while the block waits on real work (a thread).

    Inside it, the loop waits for the thread to report instead of jumping to
    the next timer (asyncio: :class:`VirtualTimeLoop`; trio: the MockClock's
    autojump is switched off meanwhile). Outside virtual time it does nothing.
    """
    global _busy
    clock = _mock_clock()
    _busy += 1
    if clock is not None:
        clock.autojump_threshold = float("inf")
    try:
        yield
    finally:
        _busy -= 1
        if clock is not None and not _busy:
            clock.autojump_threshold = 0


def _mock_clock() -> Any:
    try:
        import trio
        import trio.testing

        clock = trio.lowlevel.current_clock()
    except (ImportError, RuntimeError):  # not on trio
        return None
    return clock if isinstance(clock, trio.testing.MockClock) else None


def run(fn: Callable[[], Awaitable[T]], backend: str, *, virtual: bool = True) -> T:
    """Run ``fn`` on ``backend`` (``"asyncio"`` or ``"trio"``), on virtual time if asked."""
    options: dict[str, Any] = {}
    if virtual and backend == "trio":
        import trio.testing

        options["clock"] = trio.testing.MockClock(autojump_threshold=0)
    elif virtual:
        options["loop_factory"] = VirtualTimeLoop
    return anyio.run(fn, backend=backend, backend_options=options)
