"""SAQ: ``saq benchmarks.apps.saq_app.settings --workers N`` (SAQ logs at WARNING without ``-v``)."""

from __future__ import annotations

from typing import Any

from saq import Queue

from benchmarks.apps import record
from benchmarks.apps.settings import CONCURRENCY, NAMESPACE, REDIS_URL, SETTINGS


async def noop(ctx: dict[str, Any], *, index: int) -> None:
    record.noop(index)


async def sleep(ctx: dict[str, Any], *, index: int) -> None:
    await record.sleep_job(index)


def make_queue() -> Queue:
    return Queue.from_url(REDIS_URL, name=NAMESPACE)


#: ``concurrency`` is per worker process (benchmarks.tuning splits C between them).
settings = {
    "queue": make_queue(),
    "functions": [noop, sleep],
    "concurrency": SETTINGS.get("concurrency", CONCURRENCY),
}
