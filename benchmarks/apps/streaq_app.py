"""streaQ: ``streaq run --workers N benchmarks.apps.streaq_app:worker``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from streaq import Worker

from benchmarks.apps import record
from benchmarks.apps.settings import CONCURRENCY, NAMESPACE, REDIS_URL, SETTINGS, quiet


@asynccontextmanager
async def lifespan() -> AsyncIterator[None]:
    # streaQ's CLI configures INFO logging (a line per task) after importing this module.
    quiet("streaq")
    yield


# Per worker process: benchmarks.tuning splits C between them; prefetch = concurrency (default).
worker = Worker(
    redis_url=REDIS_URL,
    queue_name=NAMESPACE,
    concurrency=SETTINGS.get("concurrency", CONCURRENCY),
    prefetch=SETTINGS.get("prefetch"),
    lifespan=lifespan,
)


@worker.task(name="noop")
async def noop(index: int) -> None:
    record.noop(index)


@worker.task(name="sleep")
async def sleep(index: int) -> None:
    await record.sleep_job(index)
