"""taskiq on Redis streams: ``taskiq worker benchmarks.apps.taskiq_app:broker --workers 1``."""

from __future__ import annotations

from taskiq_redis import RedisStreamBroker

from benchmarks.apps import record
from benchmarks.apps.settings import NAMESPACE, REDIS_URL

broker = RedisStreamBroker(REDIS_URL, queue_name=NAMESPACE, consumer_group_name=NAMESPACE)


@broker.task(task_name="noop")
async def noop(index: int) -> None:
    record.noop(index)


@broker.task(task_name="sleep")
async def sleep(index: int) -> None:
    await record.sleep_job(index)
