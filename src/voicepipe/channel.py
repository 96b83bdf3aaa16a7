"""A session's queues: a bounded channel whose items are taken without a loop trip.

anyio's memory object streams do more than a session needs, at a price paid
on every item and every wait: ``receive`` takes a trip through the event
loop before it even looks for an item, and a receiver that has to wait
builds a waiter record (with the task's name and coroutine) and holds the
``WouldBlock`` exception and its traceback for as long as it waits. A
session waits on its queues most of its life (the consumer for events, the
respond loop for turns), so those are objects the garbage collector walks.

Here an item that is there is taken at once, a waiting receiver costs one
wake-up (on asyncio a bare future: an ``anyio.Event`` wraps an
``asyncio.Event``, which keeps a deque and makes a future per waiter, five
objects and two coroutine frames more for the collector to walk while the
session waits; on other backends an ``anyio.Event``), and a full channel
makes senders wait in the order they came, each item going in as room
opens: back-pressure and the order of what is sent are kept. The errors are
anyio's (``EndOfStream``, ``ClosedResourceError``, ``BrokenResourceError``,
``WouldBlock``), on asyncio and trio alike.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from types import TracebackType
from typing import Generic, TypeVar

import anyio
from anyio.abc import ObjectReceiveStream

__all__ = ["Receiver", "Sender"]

T = TypeVar("T")

_Waiter = asyncio.Future[None] | anyio.Event


class _Waiting(Generic[T]):
    """A sender waiting for room, with its item."""

    __slots__ = ("event", "item", "taken")

    def __init__(self, event: anyio.Event, item: T) -> None:
        self.event = event
        self.item = item
        self.taken = False


class Receiver(ObjectReceiveStream[T]):
    """The receiving end of a channel of up to ``size`` items (0: each send waits for a
    receiver; ``math.inf``: senders never wait). Its :class:`Sender` is ``Sender(receiver)``.

    Iterate it, or ``await receive()``. Taking an item that is there costs no
    trip through the event loop (unlike anyio's memory streams); waiting for
    one costs one wake-up. :meth:`close` is the receiver leaving: senders then
    get ``BrokenResourceError``.
    """

    def __init__(self, size: float) -> None:
        self._items: deque[T] = deque()
        self._size = size
        # Senders waiting for room, first come first in (made when one has to wait).
        self._senders: deque[_Waiting[T]] | None = None
        # What waiting receivers wait on, woken when an item (or the end) comes: the
        # first one's, and those of any more waiting at the same time (rare).
        self._ready: _Waiter | None = None
        self._others: list[_Waiter] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None  # on asyncio, once known
        self._looked = False  # whether the running loop was looked for
        self._event: type[anyio.Event] | None = None  # the running backend's Event class
        self._receivers = 0  # tasks waiting in receive()
        self.closed = False  # the receiving end was closed
        self.ended = False  # the sending end was closed: the end comes once the items are out

    @property
    def waiting(self) -> bool:
        """A task is waiting in :meth:`receive` (an item sent now goes straight to it)."""
        return self._receivers > 0

    def receive_nowait(self) -> T:
        """The next item; ``WouldBlock`` if none is there, ``EndOfStream`` after the last."""
        items = self._items
        if items:
            item = items.popleft()
            if self._senders:
                self._admit()
            return item
        if self._senders:  # a rendezvous (size 0): take it from the sender
            return self._hand_over()
        if self.closed:
            raise anyio.ClosedResourceError
        if self.ended:
            raise anyio.EndOfStream
        raise anyio.WouldBlock

    async def receive(self) -> T:
        """The next item, waiting for one; ``EndOfStream`` once the sender closed, all out."""
        while True:
            items = self._items
            if items:
                item = items.popleft()
                if self._senders:
                    self._admit()
                return item
            if self._senders:
                return self._hand_over()
            if self.closed:
                raise anyio.ClosedResourceError
            if self.ended:
                raise anyio.EndOfStream
            if self._ready is not None or not self._looked:
                await self._wait()
                continue
            # _wait() inlined for the common case (the only receiver waiting): a
            # waiter's wake-up crosses every frame of its task's await chain.
            loop = self._loop
            waiter = loop.create_future() if loop is not None else self._new_event()
            self._ready = waiter
            self._receivers += 1
            try:
                if isinstance(waiter, asyncio.Future):
                    await waiter
                else:
                    await waiter.wait()
            finally:
                self._receivers -= 1
                if self._ready is waiter:  # cancelled before it was woken
                    self._gone(waiter)

    async def __anext__(self) -> T:
        # receive() inlined: a consumer's every item comes through here.
        while True:
            items = self._items
            if items:
                item = items.popleft()
                if self._senders:
                    self._admit()
                return item
            if self._senders:
                return self._hand_over()
            if self.closed:
                raise anyio.ClosedResourceError
            if self.ended:
                raise StopAsyncIteration
            if self._ready is not None or not self._looked:
                await self._wait()
                continue
            # _wait() inlined for the common case (the only receiver waiting): a
            # waiter's wake-up crosses every frame of its task's await chain.
            loop = self._loop
            waiter = loop.create_future() if loop is not None else self._new_event()
            self._ready = waiter
            self._receivers += 1
            try:
                if isinstance(waiter, asyncio.Future):
                    await waiter
                else:
                    await waiter.wait()
            finally:
                self._receivers -= 1
                if self._ready is waiter:  # cancelled before it was woken
                    self._gone(waiter)

    def __aiter__(self) -> Receiver[T]:
        return self

    async def _wait(self) -> None:
        """Wait for the next item or the end (each waiter on its own future or event)."""
        loop = self._loop
        if loop is None and not self._looked:  # the first wait: is this asyncio?
            self._looked = True
            with contextlib.suppress(RuntimeError):  # (not on trio)
                self._loop = loop = asyncio.get_running_loop()
        waiter: _Waiter = loop.create_future() if loop is not None else self._new_event()
        if self._ready is None:
            self._ready = waiter
        elif self._others is None:
            self._others = [waiter]
        else:
            self._others.append(waiter)
        self._receivers += 1
        try:
            if isinstance(waiter, asyncio.Future):
                await waiter
            else:
                await waiter.wait()
        finally:
            self._receivers -= 1
            self._gone(waiter)

    def _gone(self, waiter: _Waiter) -> None:
        """A receiver's wait ended without a wake-up (cancelled): forget its waiter."""
        if self._ready is waiter:
            others = self._others
            self._ready = others.pop(0) if others else None
        elif self._others and waiter in self._others:
            self._others.remove(waiter)

    def _new_event(self) -> anyio.Event:
        # anyio.Event() looks the backend up on every call; its class is looked up once.
        kind = self._event
        if kind is None:
            event = anyio.Event()
            self._event = type(event)
            return event
        return kind()

    def _wake(self) -> None:
        ready = self._ready
        if ready is not None:
            self._ready = None
            _wake(ready)
            others, self._others = self._others, None
            for waiter in others or ():
                _wake(waiter)

    def _admit(self) -> None:
        """Room opened: the first waiting sender's item goes in."""
        assert self._senders is not None
        waiting = self._senders.popleft()
        waiting.taken = True
        self._items.append(waiting.item)
        waiting.event.set()

    def _hand_over(self) -> T:
        assert self._senders is not None
        waiting = self._senders.popleft()
        waiting.taken = True
        waiting.event.set()
        return waiting.item

    def close(self) -> None:
        """The receiver leaves: what is queued is dropped, senders get ``BrokenResourceError``."""
        if self.closed:
            return
        self.closed = True
        self._items.clear()
        senders, self._senders = self._senders, None
        for waiting in senders or ():
            waiting.event.set()
        self._wake()

    async def aclose(self) -> None:
        self.close()

    def __enter__(self) -> Receiver[T]:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        self.close()


class Sender(Generic[T]):
    """The sending end of ``channel`` (a :class:`Receiver`).

    :meth:`send` puts an item in without a loop trip when there is room, and
    waits in line when the channel is full. :meth:`close` ends the channel:
    the receiver gets what was sent, then the end.
    """

    __slots__ = ("_channel", "closed")

    def __init__(self, channel: Receiver[T]) -> None:
        self._channel = channel
        self.closed = False

    @property
    def receiving(self) -> bool:
        """A task waits in the receiver's ``receive`` (what is sent now goes straight to it)."""
        return self._channel._receivers > 0

    def send_nowait(self, item: T) -> None:
        """Put ``item`` in; ``WouldBlock`` when the channel is full."""
        if not self.offer(item):
            raise anyio.WouldBlock

    def offer(self, item: T) -> bool:
        """Put ``item`` in if there is room now; False (nothing sent) when the channel is full."""
        channel = self._channel
        if self.closed:
            raise anyio.ClosedResourceError
        if channel.closed:
            raise anyio.BrokenResourceError
        if channel._senders or len(channel._items) >= channel._size:
            return False
        channel._items.append(item)
        if channel._ready is not None:
            channel._wake()
        return True

    async def send(self, item: T) -> None:
        """Put ``item`` in, waiting (in line) while the channel is full.

        ``BrokenResourceError`` if the receiver has left (or leaves while this
        waits); a send cancelled while it waits has not sent its item.
        """
        channel = self._channel
        if self.closed:
            raise anyio.ClosedResourceError
        if channel.closed:
            # A cancelled sender finds out it is cancelled first, as with anyio's
            # streams: a reply task cut while it runs must not fail on the queue
            # its cancelled reader has just closed.
            await anyio.lowlevel.checkpoint_if_cancelled()
            raise anyio.BrokenResourceError
        if not channel._senders and len(channel._items) < channel._size:
            channel._items.append(item)
            if channel._ready is not None:
                channel._wake()
            return
        waiting = _Waiting(channel._new_event(), item)
        if channel._senders is None:
            channel._senders = deque()
        channel._senders.append(waiting)
        channel._wake()  # a receiver waiting on an empty rendezvous takes it
        try:
            await waiting.event.wait()
        except BaseException:
            if not waiting.taken and channel._senders is not None:
                with contextlib.suppress(ValueError):
                    channel._senders.remove(waiting)
            raise
        if not waiting.taken:
            await anyio.lowlevel.checkpoint_if_cancelled()  # (as above)
            raise anyio.BrokenResourceError

    def close(self) -> None:
        """No more items: the receiver ends after those sent."""
        if not self.closed:
            self.closed = True
            self._channel.ended = True
            self._channel._wake()

    async def aclose(self) -> None:
        self.close()

    def __enter__(self) -> Sender[T]:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def __aenter__(self) -> Sender[T]:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()


def _wake(waiter: _Waiter) -> None:
    if isinstance(waiter, asyncio.Future):
        if not waiter.done():  # a cancelled wait leaves a cancelled future
            waiter.set_result(None)
    else:
        waiter.set()
