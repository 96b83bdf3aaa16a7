"""The session's channel: order, back-pressure in line, both ends closing, cancellation."""

from __future__ import annotations

import math

import anyio
import pytest

from voicepipe.channel import Receiver, Sender

pytestmark = pytest.mark.anyio


def channel(size: float) -> tuple[Sender[int], Receiver[int]]:
    receiver: Receiver[int] = Receiver(size)
    return Sender(receiver), receiver


async def test_items_come_out_in_order_and_the_end_after_them() -> None:
    send, receive = channel(4)
    for item in (1, 2, 3):
        await send.send(item)
    send.close()
    assert [item async for item in receive] == [1, 2, 3]
    with pytest.raises(anyio.EndOfStream):
        await receive.receive()
    with pytest.raises(anyio.EndOfStream):
        receive.receive_nowait()
    with pytest.raises(anyio.ClosedResourceError):
        await send.send(4)


async def test_nowait_ends_say_would_block() -> None:
    send, receive = channel(1)
    with pytest.raises(anyio.WouldBlock):
        receive.receive_nowait()
    send.send_nowait(1)
    with pytest.raises(anyio.WouldBlock):
        send.send_nowait(2)
    assert not send.offer(3)  # full: nothing sent
    assert receive.receive_nowait() == 1
    assert send.offer(4)
    assert receive.receive_nowait() == 4


async def test_a_full_channel_makes_senders_wait_and_lets_them_in_in_the_order_they_came() -> None:
    send, receive = channel(1)
    await send.send(0)
    sent: list[int] = []

    async def sender(item: int) -> None:
        await send.send(item)
        sent.append(item)

    async with anyio.create_task_group() as tg:
        for item in (1, 2, 3):
            tg.start_soon(sender, item)
            await anyio.wait_all_tasks_blocked()  # each waits, in this order
        assert sent == []
        got = [await receive.receive() for _ in range(4)]
    assert got == [0, 1, 2, 3]
    assert sorted(sent) == [1, 2, 3]


async def test_a_waiting_receiver_is_woken_by_a_send_and_by_the_end() -> None:
    send, receive = channel(4)
    got: list[int] = []

    async def consume() -> None:
        async for item in receive:
            got.append(item)

    async with anyio.create_task_group() as tg:
        tg.start_soon(consume)
        await anyio.wait_all_tasks_blocked()
        assert send.receiving
        await send.send(7)
        await anyio.wait_all_tasks_blocked()
        assert got == [7]
        send.close()
    assert got == [7]
    assert not send.receiving


async def test_a_sender_cancelled_while_waiting_has_not_sent() -> None:
    send, receive = channel(1)
    await send.send(1)
    with anyio.move_on_after(0.01):
        await send.send(2)
    send.close()
    assert [item async for item in receive] == [1]


async def test_a_receiver_cancelled_while_waiting_loses_nothing() -> None:
    send, receive = channel(2)
    with anyio.move_on_after(0.01):
        await receive.receive()
    await send.send(1)
    assert await receive.receive() == 1


async def test_receivers_waiting_at_once_are_each_woken_and_one_cancelled_takes_none() -> None:
    # Each waiting receiver waits on its own future or event: one cancelled
    # neither wakes nor cancels the others, and a later receive waits afresh.
    send, receive = channel(4)
    got: list[tuple[str, int]] = []
    cancelled = anyio.CancelScope()

    async def take_one(name: str, scope: anyio.CancelScope | None = None) -> None:
        with scope or anyio.CancelScope():
            got.append((name, await receive.receive()))

    async with anyio.create_task_group() as tg:
        tg.start_soon(take_one, "a")
        tg.start_soon(take_one, "cancelled", cancelled)  # waits between the other two
        tg.start_soon(take_one, "b")
        await anyio.wait_all_tasks_blocked()
        cancelled.cancel()
        await anyio.wait_all_tasks_blocked()
        assert got == []
        await send.send(1)
        await send.send(2)
    assert sorted(got) == [("a", 1), ("b", 2)] or sorted(got) == [("a", 2), ("b", 1)]
    with anyio.move_on_after(0.01):
        await receive.receive()
    await send.send(3)
    send.close()
    assert [item async for item in receive] == [3]


async def test_the_receiver_leaving_breaks_waiting_and_later_sends() -> None:
    send, receive = channel(1)
    await send.send(1)
    outcome: list[str] = []

    async def sender() -> None:
        try:
            await send.send(2)
        except anyio.BrokenResourceError:
            outcome.append("broken")

    async with anyio.create_task_group() as tg:
        tg.start_soon(sender)
        await anyio.wait_all_tasks_blocked()
        with receive:
            pass
    assert outcome == ["broken"]
    with pytest.raises(anyio.BrokenResourceError):
        await send.send(3)
    with pytest.raises(anyio.BrokenResourceError):
        send.send_nowait(3)
    with pytest.raises(anyio.ClosedResourceError):
        await receive.receive()


async def test_the_receiver_leaving_wakes_another_waiting_receiver() -> None:
    _, receive = channel(1)
    outcome: list[str] = []

    async def waiter() -> None:
        try:
            await receive.receive()
        except anyio.ClosedResourceError:
            outcome.append("closed")

    async with anyio.create_task_group() as tg:
        tg.start_soon(waiter)
        await anyio.wait_all_tasks_blocked()
        await receive.aclose()
    assert outcome == ["closed"]


async def test_size_zero_is_a_rendezvous() -> None:
    send, receive = channel(0)
    events: list[str] = []

    async def sender() -> None:
        await send.send(1)
        events.append("sent")
        await send.send(2)
        events.append("sent")

    async with anyio.create_task_group() as tg:
        tg.start_soon(sender)
        await anyio.wait_all_tasks_blocked()
        assert events == []  # nobody has taken it yet
        events.append(f"got {await receive.receive()}")
        await anyio.wait_all_tasks_blocked()
        events.append(f"got {await receive.receive()}")
    assert events[:2] == ["got 1", "sent"]
    assert events[2:] in (["got 2", "sent"], ["sent", "got 2"])


async def test_a_waiting_receiver_takes_from_a_rendezvous_sender() -> None:
    send, receive = channel(0)
    got: list[int] = []

    async def consume() -> None:
        got.append(await receive.receive())

    async with anyio.create_task_group() as tg:
        tg.start_soon(consume)
        await anyio.wait_all_tasks_blocked()
        await send.send(5)
    assert got == [5]


async def test_an_unbounded_channel_never_makes_a_sender_wait() -> None:
    send, receive = channel(math.inf)
    for item in range(1000):
        send.send_nowait(item)
    async with send:
        pass
    assert [item async for item in receive] == list(range(1000))


async def test_items_waiting_are_taken_without_a_trip_through_the_loop() -> None:
    # Nothing else runs between two receives of queued items (no checkpoint):
    # the point of the channel, on the session's hot paths.
    send, receive = channel(4)
    for item in (1, 2):
        await send.send(item)
    ran: list[str] = []

    async def other() -> None:
        ran.append("other")

    async with anyio.create_task_group() as tg:
        tg.start_soon(other)
        first = await receive.receive()
        second = await receive.receive()
        assert ran == []
    assert (first, second, ran) == (1, 2, ["other"])
