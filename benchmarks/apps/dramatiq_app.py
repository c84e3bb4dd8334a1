"""Dramatiq on Redis: ``dramatiq benchmarks.apps.dramatiq_app --processes 1 --threads N``."""

from __future__ import annotations

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware.asyncio import AsyncIO

from benchmarks.apps import record
from benchmarks.apps.settings import NAMESPACE, REDIS_URL, quiet

broker = RedisBroker(url=REDIS_URL, namespace=NAMESPACE)
broker.add_middleware(AsyncIO())
dramatiq.set_broker(broker)
quiet("dramatiq")


@dramatiq.actor(actor_name="noop")
def noop(index: int) -> None:
    record.noop(index)


@dramatiq.actor(actor_name="sleep")
async def sleep(index: int) -> None:
    await record.sleep_job(index)
