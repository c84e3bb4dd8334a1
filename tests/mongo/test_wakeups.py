"""Wake-ups on MongoDB: change streams where the server has them, polling otherwise."""

from __future__ import annotations

import logging
import time

import anyio
import pytest

from asynctask.brokers.mongo import MongoBroker
from asynctask.testing import FakeClock
from tests.backend_mongo import mongo_broker
from tests.mongo.helpers import job

pytestmark = pytest.mark.anyio


async def test_the_capability_says_how_idle_workers_wait(notx: MongoBroker) -> None:
    hello = await notx.client.admin.command("hello")
    replica = bool(hello.get("setName")) or hello.get("msg") == "isdbgrid"
    assert notx.capabilities.push_wakeups == replica


async def test_a_polling_wait_sees_a_publish_within_its_interval(clock: FakeClock) -> None:
    async with mongo_broker(clock, change_streams=False, poll_interval=0.05) as broker:
        woke = anyio.Event()

        async def waiter() -> None:
            await broker.wait_for_jobs("q", timeout=30)
            woke.set()

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(waiter)
                await anyio.sleep(0.1)
                assert not woke.is_set()
                await broker.enqueue([job("a", clock())])
                started = time.monotonic()
                await woke.wait()
        assert time.monotonic() - started < 2


async def test_a_wait_ends_when_the_next_scheduled_job_is_due() -> None:
    async with mongo_broker(time.time, change_streams=False, poll_interval=30) as broker:
        await broker.enqueue([job("later", time.time(), run_at=time.time() + 0.3)])
        started = time.monotonic()
        with anyio.fail_after(10):
            await broker.wait_for_jobs("q", timeout=20)
        assert 0.1 < time.monotonic() - started < 5, "woke for the due job, not after the 30 s poll"
        [claimed] = await broker.claim("q", 1, lease=30, worker="w")
        assert claimed.id == "later"


async def test_a_change_stream_that_fails_falls_back_to_polling(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    hello_has_streams = False
    async with mongo_broker(clock, change_streams=True, poll_interval=0.05) as broker:
        hello = await broker.client.admin.command("hello")
        hello_has_streams = bool(hello.get("setName"))
        assert broker.capabilities.push_wakeups
        await broker.enqueue([job("a", clock())])
        with caplog.at_level(logging.WARNING), anyio.fail_after(10):
            await broker.wait_for_jobs("q", timeout=5)
            await broker.claim("q", 1, lease=30, worker="w")
            await broker.wait_for_jobs("q", timeout=0.3)
        if not hello_has_streams:
            assert "change stream failed" in caplog.text
