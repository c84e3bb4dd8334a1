"""Helpers shared by the contract's test modules."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio

from asynctask.app import App
from asynctask.brokers.base import Broker
from asynctask.models import Job, JobStatus, NewJob, Outcome, OutcomeKind
from asynctask.runtime.worker import Worker
from asynctask.testing import FakeClock, wait_until

LEASE = 30.0
APPROX = 1e-3


def new(clock: FakeClock, job_id: str, **kw: object) -> NewJob:
    fields: dict[str, object] = {
        "id": job_id,
        "task": "t",
        "queue": "q",
        "payload": b'{"n":1}',
        "max_retries": 2,
        "run_at": clock(),
    }
    fields.update(kw)
    return NewJob(**fields)  # type: ignore[arg-type]


async def claim(broker: Broker, limit: int = 10, queue: str = "q") -> list[Job]:
    return await broker.claim(queue, limit, lease=LEASE, worker="w1")


async def get(broker: Broker, job_id: str) -> Job:
    job = await broker.get(job_id)
    assert job is not None, f"job {job_id} not found"
    return job


def outcome(job: Job, kind: OutcomeKind, **kw: object) -> Outcome:
    return Outcome(job_id=job.id, token=job.token, kind=kind, **kw)  # type: ignore[arg-type]


async def finish(broker: Broker, job: Job, kind: OutcomeKind = OutcomeKind.SUCCEEDED, **kw: object) -> None:
    assert await broker.complete([outcome(job, kind, **kw)]) == [True]


@asynccontextmanager
async def running(app: App, **options: Any) -> AsyncIterator[Worker]:
    """One worker on ``app`` with short timings, stopped on exit."""
    options = {"concurrency": 4, "poll_interval": 0.02, "lease": 3.0, "heartbeat": 0.02, **options}
    worker = Worker(app, **options)
    async with app, anyio.create_task_group() as tg:
        await tg.start(worker.run)
        try:
            yield worker
        finally:
            worker.stop()


@asynccontextmanager
async def workers(app: App, count: int = 1, **options: Any) -> AsyncIterator[list[Worker]]:
    """``count`` workers on ``app``, stopped on exit."""
    options = {"concurrency": 8, "poll_interval": 0.02, "heartbeat": 0.02, **options}
    started = [Worker(app, **options) for _ in range(count)]
    async with app, anyio.create_task_group() as tg:
        for worker in started:
            await tg.start(worker.run)
        try:
            yield started
        finally:
            for worker in started:
                worker.stop()


async def job(app: App, job_id: str) -> Job:
    found = await app.get_job(job_id)
    assert found is not None
    return found


async def status_of(app: App, job_id: str) -> JobStatus:
    return (await job(app, job_id)).status


async def status_is(app: App, job_id: str, status: JobStatus) -> None:
    async def check() -> bool:
        found = await app.get_job(job_id)
        return found is not None and found.status is status

    await wait_until(check)
