"""arq, started as::

arq benchmarks.apps.arq_app.WorkerSettings --custom-log-dict benchmarks.apps.settings.LOG_CONFIG
"""

from __future__ import annotations

from typing import Any

from arq.connections import RedisSettings

from benchmarks.apps import record
from benchmarks.apps.settings import CONCURRENCY, NAMESPACE, REDIS_URL, SETTINGS


async def noop(ctx: dict[str, Any], index: int) -> None:
    record.noop(index)


async def sleep(ctx: dict[str, Any], index: int) -> None:
    await record.sleep_job(index)


class WorkerSettings:
    functions = [noop, sleep]  # noqa: RUF012 (arq reads class attributes)
    queue_name = NAMESPACE
    redis_settings = RedisSettings.from_dsn(REDIS_URL)
    # benchmarks.tuning: max_jobs C, poll_delay 0.01 s (default 0.5 s), the default read limit.
    max_jobs = SETTINGS.get("max_jobs", CONCURRENCY)
    poll_delay = SETTINGS.get("poll_delay_s", 0.5)
    queue_read_limit = SETTINGS.get("queue_read_limit")
