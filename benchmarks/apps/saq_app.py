"""SAQ: ``saq benchmarks.apps.saq_app.settings`` (SAQ logs at WARNING without ``-v``)."""

from __future__ import annotations

from typing import Any

from saq import Queue

from benchmarks.apps import record
from benchmarks.apps.settings import CONCURRENCY, NAMESPACE, REDIS_URL


async def noop(ctx: dict[str, Any], *, index: int) -> None:
    record.noop(index)


async def sleep(ctx: dict[str, Any], *, index: int) -> None:
    await record.sleep_job(index)


def make_queue() -> Queue:
    return Queue.from_url(REDIS_URL, name=NAMESPACE)


settings = {"queue": make_queue(), "functions": [noop, sleep], "concurrency": CONCURRENCY}
