"""The worker's thread pool for sync code: bounded, abandoned threads keep their place."""

from __future__ import annotations

import asyncio
import threading

import anyio
import pytest

from asynctask.runtime.threads import Threads, _Call
from asynctask.testing import wait_until

pytestmark = pytest.mark.anyio


async def test_runs_in_a_thread_and_returns_or_raises() -> None:
    threads = Threads(2)
    assert await threads.run(lambda a, b: a + b, 2, 3) == 5
    assert await threads.run(threading.get_ident) != threading.get_ident()
    with pytest.raises(ZeroDivisionError):
        await threads.run(lambda: 1 / 0)
    await anyio.sleep(0)  # the thread gives its place back through the event loop
    assert threads.busy == 0 and repr(threads) == "<Threads busy=0/2>"


async def test_at_most_size_threads_run_at_once() -> None:
    threads = Threads(3)
    lock = threading.Lock()
    running = peak = 0
    gate = threading.Event()

    def work() -> None:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        gate.wait(10)
        with lock:
            running -= 1

    async with anyio.create_task_group() as tg:
        for _ in range(8):
            tg.start_soon(threads.run, work)
        await wait_until(lambda: running == 3)
        assert threads.busy == 3
        gate.set()
    assert peak == 3


async def test_an_abandoned_thread_holds_its_place_until_it_returns() -> None:
    threads = Threads(1)
    release = threading.Event()
    done: list[str] = []

    def stuck() -> str:
        release.wait(10)
        done.append("stuck returned")
        return "late"

    with anyio.move_on_after(0.05) as scope:
        await threads.run(stuck)
    assert scope.cancelled_caught, "the caller is not held by the thread"
    assert threads.busy == 1
    with anyio.move_on_after(0.05) as waiting:
        await threads.run(done.append, "second")  # no place: it waits
    assert waiting.cancelled_caught and done == []
    release.set()
    assert await threads.run(lambda: "next") == "next"  # waits for the abandoned thread's place
    assert done == ["stuck returned"]


async def test_a_cancelled_call_gives_its_place_back() -> None:
    threads = Threads(1)
    ran: list[int] = []
    with anyio.CancelScope() as scope:
        scope.cancel()
        await threads.run(ran.append, 1)
    assert ran == [] and threads.busy == 0
    assert await threads.run(lambda: "free") == "free"


def test_a_call_abandoned_before_a_thread_took_it_never_runs() -> None:
    released: list[str] = []
    loop = asyncio.new_event_loop()
    try:
        call = _Call(lambda: released.append("ran"), (), lambda: released.append("released"), loop)
        call.settle()  # the caller gave up while the call waited for a thread
        assert call() is None  # the thread that takes it later runs nothing
        call.settle()
    finally:
        loop.close()
    assert released == ["released"], "its place is given back once, by the caller"
