"""The transport's input queue: order, back-pressure, the end of input, a consumer that stops."""

from __future__ import annotations

import anyio
import pytest

from voicepipe.transports.inbox import Inbox

pytestmark = pytest.mark.anyio


async def test_items_come_out_in_order_and_close_ends_after_them() -> None:
    inbox: Inbox[int] = Inbox(4)
    for item in (1, 2, 3):
        await inbox.put(item)
    inbox.close()
    await inbox.put(4)  # after the end of input: dropped
    assert [item async for item in inbox] == [1, 2, 3]


async def test_a_waiting_consumer_is_woken_by_put_and_by_close() -> None:
    inbox: Inbox[str] = Inbox(4)
    got: list[str] = []

    async def consume() -> None:
        async for item in inbox:
            got.append(item)

    async with anyio.create_task_group() as tg:
        tg.start_soon(consume)
        await anyio.wait_all_tasks_blocked()
        await inbox.put("a")
        await anyio.wait_all_tasks_blocked()
        assert got == ["a"]
        await inbox.put("b")
        inbox.close()
    assert got == ["a", "b"]


async def test_a_full_inbox_makes_the_producer_wait_until_there_is_room() -> None:
    inbox: Inbox[int] = Inbox(2)
    put: list[int] = []

    async def produce() -> None:
        for item in range(5):
            await inbox.put(item)
            put.append(item)

    async with anyio.create_task_group() as tg:
        tg.start_soon(produce)
        await anyio.wait_all_tasks_blocked()
        assert put == [0, 1]  # the third waits for room
        assert await inbox.__anext__() == 0
        await anyio.wait_all_tasks_blocked()
        assert put == [0, 1, 2]
        assert [await inbox.__anext__() for _ in range(4)] == [1, 2, 3, 4]


async def test_a_consumer_that_stops_lets_a_waiting_producer_go_and_drops_the_rest() -> None:
    inbox: Inbox[int] = Inbox(1)
    done = anyio.Event()

    async def produce() -> None:
        for item in range(3):
            await inbox.put(item)
        done.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(produce)
        await anyio.wait_all_tasks_blocked()
        await inbox.aclose()
        with anyio.fail_after(5):
            await done.wait()
    assert [item async for item in inbox] == []


async def test_close_lets_a_waiting_producer_go() -> None:
    inbox: Inbox[int] = Inbox(1)
    await inbox.put(0)
    async with anyio.create_task_group() as tg:
        tg.start_soon(inbox.put, 1)
        await anyio.wait_all_tasks_blocked()
        inbox.close()
    assert [item async for item in inbox] == [0]


async def test_put_nowait_queues_only_when_there_is_room_and_wakes_the_consumer() -> None:
    inbox: Inbox[int] = Inbox(2)
    got: list[int] = []

    async def consume() -> None:
        async for item in inbox:
            got.append(item)
            if item == 1:
                await anyio.sleep_forever()  # stops taking: the inbox fills

    async with anyio.create_task_group() as tg:
        tg.start_soon(consume)
        await anyio.wait_all_tasks_blocked()
        assert inbox.put_nowait(1)
        await anyio.wait_all_tasks_blocked()
        assert got == [1]  # the waiting consumer was woken
        assert (inbox.put_nowait(2), inbox.put_nowait(3), inbox.put_nowait(4)) == (
            True,
            True,
            False,  # full: the caller must wait with put()
        )
        tg.cancel_scope.cancel()
    inbox.close()
    assert not inbox.put_nowait(5)  # closed
    assert [item async for item in inbox] == [2, 3]
