"""The property behind issue #11's corrupt-record rules, for any broker: publish one job to be
damaged among good ones, damage its stored record (``damage``, per broker), run a real worker,
and check that the worker survives, every good job runs exactly once, and the damaged job ends
``failed`` with a specific error (or, for values its broker accepts, runs like any job)."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Awaitable, Callable

import anyio

from asynctask import App, JobCtx, Worker
from asynctask.brokers import Broker
from asynctask.models import Job, JobStatus
from asynctask.testing import wait_until

FINISHED = {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED}


def ends_for(damage: object) -> set[JobStatus]:
    """Where the damaged job may end: finished, or ``waiting`` when the damage gave it a positive
    ``pending`` count. That is no damage a broker can see: it is the workflow counter saying the
    job has children still to finish, so after its run the job waits for them (on every broker, as
    a parent whose children were deleted by hand does)."""
    pending = damage.get("pending") if isinstance(damage, dict) else None
    if type(pending) is int and pending > 0:
        return FINISHED | {JobStatus.WAITING}
    return FINISHED


async def run_with_damage(
    broker: Broker,
    good: int,
    damage: Callable[[str, str], Awaitable[None]],
    ends: set[JobStatus] = FINISHED,
) -> tuple[Job, Counter[int]]:
    """Publish job 0 (first in claim order) and ``good`` more to a fresh queue, ``damage(queue,
    id of job 0)``, run a worker until job 0 is in one of ``ends`` (see :func:`ends_for`) and
    every other job is finished; returns job 0 and the run counts."""
    queue = f"q{uuid.uuid4().hex[:10]}"
    runs: Counter[int] = Counter()
    app = App(broker)

    @app.task(name="note", queue=queue, max_retries=1)
    async def note(ctx: JobCtx, n: int) -> None:
        runs[n] += 1

    worker = Worker(
        app, concurrency=4, poll_interval=0.02, lease=2, maintenance_interval=0.1, shutdown_grace=0
    )
    async with app:
        bad = await app.publish("note", 0, priority=10)
        ids = [bad.id] + [(await app.publish("note", n)).id for n in range(1, good + 1)]
        await damage(queue, bad.id)

        async def settled() -> bool:
            # By id: a row with created_at NaN is past every listing cursor on Postgres.
            jobs = [await broker.get(job_id) for job_id in ids]
            return all(
                j is not None and j.status in (ends if n == 0 else FINISHED) for n, j in enumerate(jobs)
            )

        async with anyio.create_task_group() as tg:
            await tg.start(worker.run)
            await wait_until(settled, timeout=30, interval=0.02)
            assert "idle" not in repr(worker), "the worker is still running"
            worker.stop()
        job = await broker.get(bad.id)
        assert job is not None
        assert job.status in ends
        if job.status is JobStatus.WAITING:
            assert runs[0] == 1, "a job waits for its children only after its run"
        for n in range(1, good + 1):
            assert runs[n] == 1, f"good job {n} ran {runs[n]} times"
        for job_id in ids[1:]:
            other = await broker.get(job_id)
            assert other is not None and other.status is JobStatus.SUCCEEDED
        return job, runs


async def check_quarantined(broker: Broker, job_id: str, reason: str, queue: str = "q") -> None:
    """Job ``job_id`` reads and lists as failed with ``corrupt job record: <reason>``, holds no
    lease, and no claim of its queue hands it out."""
    bad = await broker.get(job_id)
    assert bad is not None, "the record is still there"
    assert bad.status is JobStatus.FAILED
    assert bad.error == f"corrupt job record: {reason}"
    assert bad.lease_expires_at is None
    assert job_id in [j.id for j in await broker.list_jobs(status=JobStatus.FAILED)]
    assert job_id in [j.id for j in await broker.list_jobs()]
    assert await broker.claim(queue, 10, lease=30, worker="w") == []
