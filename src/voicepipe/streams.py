"""Small stream helpers the session machinery shares: close on exit, send without a loop trip."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Iterable
from typing import Generic, TypeVar

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

__all__ = ["CLOSE_TIMEOUT", "aiter_any", "closing", "put", "take"]

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
        iterator = self._iterator
        if getattr(iterator, "ag_frame", True) is None:  # a finished async generator
            return
        close = getattr(iterator, "aclose", None)
        if close is not None:
            with anyio.move_on_after(CLOSE_TIMEOUT, shield=True):
                await close()


async def put(stream: MemoryObjectSendStream[T], item: T) -> None:
    """Send ``item``, without a trip through the event loop when there is room.

    anyio's ``send`` always yields to the loop first; on the hot paths (every
    event, every audio chunk) that trip costs more than the work itself.
    A full buffer still blocks, so back-pressure is kept.
    """
    try:
        stream.send_nowait(item)
        return
    except anyio.WouldBlock:
        pass
    await stream.send(item)  # outside the except: the wait does not hold the exception alive


async def take(stream: MemoryObjectReceiveStream[T]) -> T:
    """Receive an item, without a trip through the event loop when one is waiting.

    The other half of :func:`put`, for the session's own streams (a reply's
    sentences and audio): anyio's ``receive`` always yields to the loop first.
    ``anyio.EndOfStream`` once the stream is closed and empty.
    """
    try:
        return stream.receive_nowait()
    except anyio.WouldBlock:
        pass
    return await stream.receive()


async def aiter_any(items: Iterable[T] | AsyncIterable[T]) -> AsyncIterator[T]:
    """An async iterator over a plain or an async iterable."""
    if isinstance(items, AsyncIterable):
        async for item in items:
            yield item
    else:
        for item in items:
            yield item
