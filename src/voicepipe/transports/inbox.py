"""The pipeline's input on a server: a bounded queue from the socket reader to the pipeline.

A memory object stream would do, but on the hot path (one item per 20 ms
audio frame per session) its ``receive`` costs a trip through the event
loop before it even looks for an item, and a waiter object per wait. Here
taking an item that is there costs no trip, and waiting for one costs one
wake-up. A full queue still makes the reader wait (back-pressure).
"""

from __future__ import annotations

from collections import deque
from typing import Generic, TypeVar

import anyio

__all__ = ["Inbox"]

T = TypeVar("T")


class Inbox(Generic[T]):
    """Up to ``size`` items waiting for the consumer, who iterates the inbox.

    :meth:`close` ends the input (the consumer gets what is queued, then the
    end); :meth:`aclose` is the consumer stopping (what is queued and what
    comes later is dropped, and a waiting producer is let go).
    """

    def __init__(self, size: int) -> None:
        self._items: deque[T] = deque()
        self._size = max(1, size)
        # The running backend's Event class, looked up once: anyio.Event() finds the
        # backend anew on every call, which costs more than the rest of a put.
        self._event: type[anyio.Event] = type(anyio.Event())
        self._ready: anyio.Event | None = None  # the consumer waits for an item
        self._room: anyio.Event | None = None  # the producer waits for room
        self.closed = False
        self.abandoned = False

    async def put(self, item: T) -> None:
        """Queue ``item``; wait while the queue is full. Dropped once closed or abandoned."""
        while len(self._items) >= self._size and not (self.abandoned or self.closed):
            self._room = room = self._event()
            await room.wait()
        if self.abandoned or self.closed:
            return
        self._items.append(item)
        if self._ready is not None:  # inline: this runs for every audio frame
            self._ready.set()
            self._ready = None

    def put_nowait(self, item: T) -> bool:
        """Queue ``item`` if there is room and the inbox is open: True if it was queued."""
        if len(self._items) >= self._size or self.abandoned or self.closed:
            return False
        self._items.append(item)
        if self._ready is not None:
            self._ready.set()
            self._ready = None
        return True

    def close(self) -> None:
        """No more items: the consumer ends after those queued."""
        self.closed = True
        self._wake_consumer()
        self._wake_producer()

    def __aiter__(self) -> Inbox[T]:
        return self

    async def __anext__(self) -> T:
        while not self._items:
            if self.closed or self.abandoned:
                raise StopAsyncIteration
            self._ready = ready = self._event()
            await ready.wait()
        item = self._items.popleft()
        if self._room is not None:  # inline: this runs for every audio frame
            self._room.set()
            self._room = None
        return item

    async def aclose(self) -> None:
        """The consumer stops: drop what is queued, and whatever is put later."""
        self.abandoned = True
        self._items.clear()
        self._wake_producer()

    def _wake_consumer(self) -> None:
        if self._ready is not None:
            self._ready.set()
            self._ready = None

    def _wake_producer(self) -> None:
        if self._room is not None:
            self._room.set()
            self._room = None
