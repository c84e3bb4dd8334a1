"""Idle workers are woken by a publish through a blocking pop, not by polling."""

from __future__ import annotations

import time

import anyio
import pytest
from redis.asyncio import Redis

from asynctask.brokers.redis import RedisBroker
from tests.backend_redis import REDIS_URL
from tests.redis.helpers import broker_for, job

pytestmark = pytest.mark.anyio


async def _open(prefix: str) -> RedisBroker:
    broker = broker_for(prefix)
    await broker.open()
    return broker


async def test_wait_is_woken_by_an_enqueue_from_another_broker(prefix: str) -> None:
    waiter, publisher = await _open(prefix), await _open(prefix)
    try:
        woke = anyio.Event()
        waiting = anyio.Event()

        async def wait() -> None:
            waiting.set()
            await waiter.wait_for_jobs("q", timeout=60)
            woke.set()

        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(wait)
                await waiting.wait()
                # The enqueue may land before the BLPOP starts; the peek or the signal list
                # catches it either way.
                await publisher.enqueue([job("a", time.time())])
                await woke.wait()
        [claimed] = await waiter.claim("q", 1, lease=30, worker="w")
        assert claimed.id == "a"
    finally:
        await waiter.close()
        await publisher.close()


async def test_wait_returns_at_once_when_a_job_is_ready(prefix: str) -> None:
    broker = await _open(prefix)
    try:
        await broker.enqueue([job("a", time.time())])
        with anyio.fail_after(2):
            await broker.wait_for_jobs("q", timeout=60)
    finally:
        await broker.close()


async def test_wait_ends_when_a_scheduled_job_comes_due(prefix: str) -> None:
    broker = await _open(prefix)
    try:
        await broker.enqueue([job("later", time.time() + 0.3)])
        with anyio.fail_after(5):
            await broker.wait_for_jobs("q", timeout=60)
        assert [j.id for j in await broker.claim("q", 1, lease=30, worker="w")] == ["later"]
    finally:
        await broker.close()


async def test_wait_ends_by_its_timeout(prefix: str) -> None:
    broker = await _open(prefix)
    try:
        start = time.monotonic()
        with anyio.fail_after(5):
            await broker.wait_for_jobs("q", timeout=0.2)
        assert time.monotonic() - start >= 0.15
    finally:
        await broker.close()


async def test_wake_signals_are_bounded(prefix: str) -> None:
    broker = await _open(prefix)
    client = Redis.from_url(REDIS_URL)
    try:
        for i in range(50):
            await broker.enqueue([job(f"j{i}", time.time())])
        assert await client.llen(broker.keys.queue("q").wake) <= 16
    finally:
        await client.aclose()
        await broker.close()
