"""A fetcher lets the executors start the jobs it just claimed before it waits for more, and
reports a wait-and-claim that never answered with that call's own deadline."""

from __future__ import annotations

import logging

import anyio
import msgspec
import pytest

from asynctask import App, JobCtx, MemoryBroker, Worker
from asynctask.flow import TaskLimits
from asynctask.models import Job
from asynctask.testing import wait_until

pytestmark = pytest.mark.anyio


class RecordingBroker(MemoryBroker):
    """A memory broker that writes its claims and waits into a shared event list."""

    def __init__(self, events: list[str]) -> None:
        super().__init__()
        self.events = events

    async def claim(
        self, queue: str, limit: int, *, lease: float, worker: str, limits: TaskLimits | None = None
    ) -> list[Job]:
        jobs = await super().claim(queue, limit, lease=lease, worker=worker, limits=limits)
        self.events.extend(f"claimed {job.id}" for job in jobs)
        return jobs

    async def wait_for_jobs(self, queue: str, timeout: float, *, held: bool = False) -> None:
        self.events.append("wait")
        await super().wait_for_jobs(queue, timeout, held=held)


async def test_claimed_jobs_start_before_the_fetcher_waits_again() -> None:
    events: list[str] = []
    app = App(RecordingBroker(events))

    @app.task
    async def work(ctx: JobCtx, n: int) -> int:
        events.append(f"started {ctx.job.id}")
        return n

    async with app:
        worker = Worker(app, concurrency=4, poll_interval=0.05)
        async with anyio.create_task_group() as tg:
            await tg.start(worker.run)
            handles = []
            for n in range(3):  # one at a time: each claim takes fewer jobs than it asked for
                handles.append(await work.publish(n))
                assert await handles[-1].result(timeout=20) == n
            worker.stop()
    for handle in handles:
        claimed = events.index(f"claimed {handle.id}")
        assert events[claimed + 1] == f"started {handle.id}", events[claimed:]


class SilentWakeBroker(MemoryBroker):
    """A claim-on-wake broker whose wait-and-claim never answers."""

    def __init__(self) -> None:
        super().__init__()
        self.capabilities = msgspec.structs.replace(self.capabilities, claim_on_wake=True)

    async def wait_and_claim(self, queue: str, timeout: float, limit: int, **options: object) -> list[Job]:
        await anyio.sleep_forever()
        raise AssertionError("unreachable")


async def test_a_silent_wait_and_claim_is_reported_with_its_own_deadline(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = App(SilentWakeBroker())
    worker = Worker(app, concurrency=2, poll_interval=0.05, broker_timeout=0.1)
    with caplog.at_level(logging.WARNING, logger="asynctask"):
        async with app, anyio.create_task_group() as tg:
            await tg.start(worker.run)

            async def reported() -> bool:
                return any("claiming from" in r.getMessage() for r in caplog.records)

            await wait_until(reported, timeout=20)
            worker.stop()
    message = next(r.getMessage() for r in caplog.records if "claiming from" in r.getMessage())
    # The wait's deadline is poll_interval + broker_timeout, not broker_timeout alone.
    assert "no answer within 0.15s" in message, message
