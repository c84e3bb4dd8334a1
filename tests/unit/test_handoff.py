"""The worker's hand-off (asynctask.runtime.handoff): order, ending, and nothing lost on cancel."""

from __future__ import annotations

import asyncio

import anyio
import pytest

from asynctask.runtime.handoff import Handoff

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # the hand-off is asyncio's, as the worker is


async def test_items_come_out_in_order_and_the_end_follows_the_last_sender() -> None:
    handoff: Handoff[int] = Handoff()
    first = handoff.sender()
    second = first.clone()
    first.put(1)
    second.put(2)
    first.close()
    second.put(3)
    assert [await handoff.get(), handoff.get_nowait()] == [1, 2]
    second.close()
    assert await handoff.get() == 3  # what was put before the end is still taken
    with pytest.raises(anyio.EndOfStream):
        await handoff.get()
    with pytest.raises(anyio.EndOfStream):
        handoff.get_nowait()
    with pytest.raises(anyio.ClosedResourceError):
        second.put(4)
    with pytest.raises(anyio.ClosedResourceError):
        handoff.sender()


async def test_a_waiting_getter_is_woken_by_a_put_and_by_the_end() -> None:
    handoff: Handoff[str] = Handoff()
    sender = handoff.sender()
    got: list[str] = []
    ended = anyio.Event()

    async def consume() -> None:
        while True:
            try:
                got.append(await handoff.get())
            except anyio.EndOfStream:
                ended.set()
                return

    async with anyio.create_task_group() as tg:
        tg.start_soon(consume)
        await anyio.wait_all_tasks_blocked()
        with pytest.raises(anyio.WouldBlock):
            handoff.get_nowait()
        sender.put("a")
        await anyio.wait_all_tasks_blocked()
        assert got == ["a"]
        sender.close()
        await ended.wait()
    assert got == ["a"]


async def test_an_item_handed_to_a_cancelled_getter_goes_back_to_the_front() -> None:
    handoff: Handoff[int] = Handoff()
    sender = handoff.sender()
    getter = asyncio.ensure_future(handoff.get())
    await anyio.wait_all_tasks_blocked()
    sender.put(1)  # handed to the waiting getter ...
    sender.put(2)
    getter.cancel()  # ... whose task is cancelled before it runs
    with pytest.raises(asyncio.CancelledError):
        await getter
    assert [handoff.get_nowait(), handoff.get_nowait()] == [1, 2]


async def test_a_cancelled_getter_that_got_nothing_leaves_no_trace() -> None:
    handoff: Handoff[int] = Handoff()
    sender = handoff.sender()
    with anyio.move_on_after(0):
        await handoff.get()
    sender.put(7)  # not handed to the departed getter
    assert handoff.get_nowait() == 7
