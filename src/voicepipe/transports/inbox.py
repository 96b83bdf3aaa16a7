"""The pipeline's input on a server: a bounded queue from the socket reader to the pipeline.

A memory object stream would do, but on the hot path (one item per 20 ms
audio frame per session) its ``receive`` costs a trip through the event
loop before it even looks for an item, and a waiter object per wait. Here
taking an item that is there costs no trip, and waiting for one costs one
wake-up: on asyncio a bare future (an ``anyio.Event`` wraps an
``asyncio.Event``, which wraps a future, at several times the cost), on
other backends an ``anyio.Event``. A full queue still makes the reader wait
(back-pressure).
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Generic, TypeVar

import anyio

from voicepipe.channel import _Waiter, _wake  # one waiter kind for the core's queues and this

__all__ = ["Inbox"]

T = TypeVar("T")


class Inbox(Generic[T]):
    """Up to ``size`` items waiting for the consumer, who iterates the inbox.

    :meth:`close` ends the input (the consumer gets what is queued, then the
    end); :meth:`aclose` is the consumer stopping (what is queued and what
    comes later is dropped, and a waiting producer is let go). Made in the
    event loop that uses it.
    """

    def __init__(self, size: int) -> None:
        self._items: deque[T] = deque()
        self._size = max(1, size)
        self._loop: asyncio.AbstractEventLoop | None = None
        # Off asyncio: the backend's Event class, looked up once (anyio.Event() finds the
        # backend anew on every call, which costs more than the rest of a put).
        self._event: type[anyio.Event] | None = None
        try:
            self._loop = asyncio.get_running_loop()
        except RuntimeError:  # not asyncio (trio)
            self._event = type(anyio.Event())
        self._ready: _Waiter | None = None  # the consumer waits for an item
        self._room: _Waiter | None = None  # the producer waits for room
        self.closed = False
        self.abandoned = False

    async def put(self, item: T) -> None:
        """Queue ``item``; wait while the queue is full. Dropped once closed or abandoned."""
        while len(self._items) >= self._size and not (self.abandoned or self.closed):
            self._room = room = self._waiter()
            await _wait(room)
        if self.abandoned or self.closed:
            return
        self._items.append(item)
        ready = self._ready
        if ready is not None:  # inline: this runs for every audio frame
            self._ready = None
            _wake(ready)

    def put_nowait(self, item: T) -> bool:
        """Queue ``item`` if there is room and the inbox is open: True if it was queued."""
        if len(self._items) >= self._size or self.abandoned or self.closed:
            return False
        self._items.append(item)
        ready = self._ready
        if ready is not None:  # inline: this runs for every audio frame
            self._ready = None
            if isinstance(ready, asyncio.Future):
                if not ready.done():
                    ready.set_result(None)
            else:
                ready.set()
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
            if self._loop is not None:  # inline: this runs for every audio frame
                self._ready = future = self._loop.create_future()
                await future
            else:
                assert self._event is not None
                self._ready = event = self._event()
                await event.wait()
        item = self._items.popleft()
        room = self._room
        if room is not None:  # inline: this runs for every audio frame
            self._room = None
            _wake(room)
        return item

    async def aclose(self) -> None:
        """The consumer stops: drop what is queued, and whatever is put later."""
        self.abandoned = True
        self._items.clear()
        self._wake_producer()

    def _waiter(self) -> _Waiter:
        if self._loop is not None:
            return self._loop.create_future()
        assert self._event is not None
        return self._event()

    def _wake_consumer(self) -> None:
        ready, self._ready = self._ready, None
        if ready is not None:
            _wake(ready)

    def _wake_producer(self) -> None:
        room, self._room = self._room, None
        if room is not None:
            _wake(room)


async def _wait(waiter: _Waiter) -> None:
    if isinstance(waiter, asyncio.Future):
        await waiter
    else:
        await waiter.wait()
