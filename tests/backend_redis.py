"""The Redis broker for the shared suites: one fresh key prefix per broker, deleted afterwards.

``ASYNCTASK_TEST_REDIS_URL`` points the tests at another server (default: local database 0).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from redis.asyncio import Redis

from asynctask.brokers import Broker
from asynctask.brokers.base import Clock
from asynctask.brokers.redis import RedisBroker

REDIS_URL = os.environ.get("ASYNCTASK_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


async def delete_prefix(client: Redis, broker: RedisBroker) -> None:
    """Delete every key under the broker's prefix."""
    keys = [key async for key in client.scan_iter(match=broker.keys.pattern(), count=1000)]
    for start in range(0, len(keys), 500):
        await client.delete(*keys[start : start + 500])


@asynccontextmanager
async def factory(clock: Clock) -> AsyncIterator[Broker]:
    client = Redis.from_url(REDIS_URL)
    broker = RedisBroker(client=client, prefix=f"t:{uuid.uuid4().hex}", clock=clock)
    await broker.open()
    try:
        yield broker
    finally:
        await broker.close()
        await delete_prefix(client, broker)
        await client.aclose()
