"""The worker survives a broker that fails for a while: claims, wake-ups and completions retry."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import anyio
import pytest

from asynctask import App, BrokerUnavailable, JobCtx, JobStatus, MemoryBroker, Worker
from asynctask.models import Job, Outcome

pytestmark = pytest.mark.anyio


class FlakyBroker(MemoryBroker):
    """A memory broker whose claim, wait and complete fail their first few calls."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = Counter({"claim": failures, "wait": failures, "complete": failures})
        self.calls: Counter[str] = Counter()

    def _maybe_fail(self, what: str) -> None:
        self.calls[what] += 1
        if self.failures[what] > 0:
            self.failures[what] -= 1
            raise BrokerUnavailable(f"{what}: connection reset")

    async def claim(self, queue: str, limit: int, *, lease: float, worker: str) -> list[Job]:
        self._maybe_fail("claim")
        return await super().claim(queue, limit, lease=lease, worker=worker)

    async def wait_for_jobs(self, queue: str, timeout: float) -> None:
        self._maybe_fail("wait")
        await super().wait_for_jobs(queue, timeout)

    async def complete(self, outcomes: Sequence[Outcome]) -> list[bool]:
        self._maybe_fail("complete")
        return await super().complete(outcomes)


async def test_worker_rides_out_broker_errors() -> None:
    broker = FlakyBroker(failures=3)
    app = App(broker)
    runs: list[int] = []

    @app.task
    async def work(ctx: JobCtx, n: int) -> int:
        runs.append(n)
        return n

    async with app:
        worker = Worker(app, concurrency=2, poll_interval=0.01)
        async with anyio.create_task_group() as tg:
            await tg.start(worker.run)
            handle = await work.publish(7)
            assert await handle.result(timeout=20) == 7
            worker.stop()
    job = await broker.get(handle.id)
    assert job is not None and job.status is JobStatus.SUCCEEDED
    assert runs == [7], "the job ran once; only reporting its outcome was retried"
    assert broker.failures == Counter({"claim": 0, "wait": 0, "complete": 0}), broker.calls
    assert worker.stats.succeeded == 1


async def test_outcome_retries_are_no_further_apart_than_the_heartbeat(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An outcome held through an outage is retried at least once per heartbeat (here 0.1 s,
    a third of the lease), not after a back-off that outgrows the lease: the job's lease, kept
    alive by the same heartbeat, must not lapse while its outcome waits."""
    broker = FlakyBroker(failures=0)
    broker.failures["complete"] = 6  # back-off 0.05 0.1 0.2 0.4 0.8 1.6 s if uncapped
    app = App(broker)

    @app.task
    async def work(ctx: JobCtx, n: int) -> int:
        return n

    caplog.set_level("WARNING", logger="asynctask.worker")
    async with app:
        worker = Worker(app, concurrency=1, poll_interval=0.01, lease=0.3)
        async with anyio.create_task_group() as tg:
            await tg.start(worker.run)
            handle = await work.publish(3)
            assert await handle.result(timeout=20) == 3
            worker.stop()
    delays = [r.args[2] for r in caplog.records if getattr(r, "action", None) == "complete_error"]
    assert len(delays) == 6, delays
    assert max(delays) <= 0.1, delays
    assert broker.failures["complete"] == 0
