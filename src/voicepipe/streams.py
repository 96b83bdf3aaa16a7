"""Small stream helpers the session machinery shares: close on exit, iterate anything."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Iterable
from typing import Generic, TypeVar

import anyio

__all__ = ["CLOSE_TIMEOUT", "aclose", "aiter_any", "closing"]

T = TypeVar("T")

CLOSE_TIMEOUT = 2.0
"""Seconds a provider stream gets to close cleanly after a cancellation."""


class closing(Generic[T]):
    """Iterate ``iterable`` and close it on exit, even when cancelled::

        async with closing(stream) as items:
            async for item in items: ...

    The close is shielded (for at most ``CLOSE_TIMEOUT``) so a provider can
    release its HTTP stream or socket cleanly on barge-in. An async generator
    that has run to its end has nothing left to close: no scope is entered
    for it (every reply and session closes a few, so this is on the hot path).
    """

    __slots__ = ("_iterator",)

    def __init__(self, iterable: AsyncIterable[T]) -> None:
        self._iterator = aiter(iterable)

    async def __aenter__(self) -> AsyncIterator[T]:
        return self._iterator

    async def __aexit__(self, *exc_info: object) -> None:
        await aclose(self._iterator)


async def aclose(iterator: object) -> None:
    """Close ``iterator`` as :class:`closing` does on exit (shielded, bounded)."""
    if getattr(iterator, "ag_frame", True) is None:  # a finished async generator
        return
    close = getattr(iterator, "aclose", None)
    if close is not None:
        with anyio.move_on_after(CLOSE_TIMEOUT, shield=True):
            await close()


async def aiter_any(items: Iterable[T] | AsyncIterable[T]) -> AsyncIterator[T]:
    """An async iterator over a plain or an async iterable."""
    if isinstance(items, AsyncIterable):
        async for item in items:
            yield item
    else:
        for item in items:
            yield item
