"""arq, started as::

arq benchmarks.apps.arq_app.WorkerSettings --custom-log-dict benchmarks.apps.settings.LOG_CONFIG
"""

from __future__ import annotations

from typing import Any

from arq.connections import RedisSettings

from benchmarks.apps import record
from benchmarks.apps.settings import CONCURRENCY, NAMESPACE, REDIS_URL


async def noop(ctx: dict[str, Any], index: int) -> None:
    record.noop(index)


async def sleep(ctx: dict[str, Any], index: int) -> None:
    await record.sleep_job(index)


class WorkerSettings:
    functions = [noop, sleep]  # noqa: RUF012 (arq reads class attributes)
    queue_name = NAMESPACE
    redis_settings = RedisSettings.from_dsn(REDIS_URL)
    max_jobs = CONCURRENCY
    # The poll delay the reference figures were measured with (default 0.5 s).
    poll_delay = 0.01
