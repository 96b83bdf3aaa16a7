"""Graceful drain: how a worker stops on SIGTERM without dropping the calls in progress.

On SIGTERM (or :meth:`Drain.begin`) the worker keeps its listening socket
but refuses new sessions (close 1012, "reconnect"), and ``/health`` answers
503 so a load balancer sends its work elsewhere. Sessions in progress go on
for up to ``grace`` seconds; then their input ends, the reply in progress is
finished, and they close with ``finish`` reason ``shutdown`` (close 1001). A
session still busy ``stop_after`` seconds later is cut. Then the server
(uvicorn) is told to exit, as the SIGTERM would have done at once. A second
SIGTERM skips the wait.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

import anyio
from anyio.abc import TaskStatus

__all__ = ["RECONNECT", "Drain"]

log = logging.getLogger("voicepipe.server")

RECONNECT = (1012, "server restarting: reconnect to continue")
"""The close code (service restart) and reason a draining worker refuses sessions with."""

_Handler = Callable[[int, FrameType | None], Any] | int | None


class Drain:
    """One worker's sessions and its drain (see the module's docstring)."""

    def __init__(self, grace: float, stop_after: float) -> None:
        self.grace = grace
        self.stop_after = stop_after
        self.draining = False
        self.sessions = 0
        self.shutdown: anyio.Event | None = None  # set when the grace is over
        self._requested: anyio.Event | None = None
        self._scopes: set[anyio.CancelScope] = set()
        self._signalled = False  # the drain came from SIGTERM: the process exits after it

    def begin(self) -> None:
        """Start draining (idempotent). Call it in the event loop's thread."""
        if self._requested is not None:
            self._requested.set()

    @contextmanager
    def session(self) -> Iterator[anyio.CancelScope]:
        """Count a session while it runs; the scope is cut if it outlives the drain."""
        scope = anyio.CancelScope()
        self._scopes.add(scope)
        self.sessions += 1
        try:
            yield scope
        finally:
            self.sessions -= 1
            self._scopes.discard(scope)

    async def run(
        self, *, on_drained: Callable[[], None] | None, task_status: TaskStatus[None]
    ) -> None:
        """Wait for the drain to begin, carry it out, then call ``on_drained``."""
        self.shutdown = anyio.Event()
        self._requested = anyio.Event()
        task_status.started()
        await self._requested.wait()
        self.draining = True
        log.info(
            "draining: refusing new sessions; %d in progress get up to %g s",
            self.sessions,
            self.grace,
        )
        with anyio.move_on_after(self.grace):
            await self._idle()
        self.shutdown.set()  # the sessions still going end their input, then close 1001
        with anyio.move_on_after(self.stop_after):
            await self._idle()
        if self.sessions:
            log.warning("drain: cutting %d sessions that did not end in time", self.sessions)
            for scope in list(self._scopes):
                scope.cancel()
            with anyio.move_on_after(1):
                await self._idle()
        log.info("drained: every session has ended")
        if on_drained is not None:
            on_drained()

    async def _idle(self) -> None:
        while self.sessions:  # noqa: ASYNC110 - sessions end in their own tasks
            await anyio.sleep(0.05)

    async def watch(self, *, task_status: TaskStatus[None]) -> None:
        """Drain on SIGTERM instead of stopping at once; hand the exit to the server's own
        handler (uvicorn's) when drained, or at a second SIGTERM.

        Signals reach only the main thread: elsewhere (a test client's thread) the
        drain begins only by :meth:`begin`.
        """
        if threading.current_thread() is not threading.main_thread():
            await self.run(on_drained=None, task_status=task_status)
            return
        previous: _Handler = signal.getsignal(signal.SIGTERM)
        with anyio.open_signal_receiver(signal.SIGTERM) as signals:
            task_status.started()
            async with anyio.create_task_group() as tg:
                await tg.start(self._drain_then, previous)
                first = True
                async for _ in signals:
                    if first:
                        self._signalled = True
                        self.begin()
                        first = False
                    else:
                        log.info("second SIGTERM: stopping now")
                        for scope in list(self._scopes):
                            scope.cancel()
                        _forward(previous)

    async def _drain_then(self, previous: _Handler, *, task_status: TaskStatus[None]) -> None:
        def exit_if_signalled() -> None:
            # A drain begun by a call (not a signal) leaves the process to its owner.
            if self._signalled:
                _forward(previous)

        await self.run(on_drained=exit_if_signalled, task_status=task_status)


def _forward(handler: _Handler) -> None:
    """Do what SIGTERM would have done without the drain."""
    if callable(handler):
        handler(signal.SIGTERM, None)
    elif handler != signal.SIG_IGN:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.raise_signal(signal.SIGTERM)
