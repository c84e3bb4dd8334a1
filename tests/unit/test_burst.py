"""Burst mode: the worker stops once nothing is left to claim."""

from __future__ import annotations

import anyio
import pytest

from asynctask import App, JobCtx, JobStatus, Retry, Worker

pytestmark = pytest.mark.anyio


async def test_a_burst_worker_runs_what_is_ready_then_returns() -> None:
    app = App("memory://")
    runs: list[str] = []

    @app.task
    async def step(ctx: JobCtx, n: int) -> None:
        runs.append(f"{n}.{ctx.attempt}")
        await anyio.sleep(0.01)
        if n == 0 and ctx.attempt == 1:
            raise Retry(delay=0)  # due at once: still this run's work
        if n < 3 and ctx.attempt == 1:
            await ctx.spawn(step, n + 10)

    @app.task(queue="other")
    async def elsewhere(ctx: JobCtx) -> None:
        runs.append("other")

    async with app:
        for n in range(4):
            await step.publish(n)
        later = await step.publish(99, delay=3600)
        await elsewhere.publish(None)
        with anyio.fail_after(10):
            await Worker(app, queues=["default"], burst=True, poll_interval=0.02, concurrency=2).run()
        assert sorted(runs) == sorted(["0.1", "0.2", "1.1", "2.1", "3.1", "11.1", "12.1"])
        assert (await app.get_job(later.id)).status is JobStatus.SCHEDULED  # type: ignore[union-attr]
        left = await app.list_jobs(queue="other")
        assert [j.status for j in left] == [JobStatus.QUEUED], "only its own queues"


async def test_a_burst_worker_with_nothing_to_do_returns_at_once() -> None:
    app = App("memory://")

    @app.task
    async def idle(ctx: JobCtx) -> None:
        return None

    with anyio.fail_after(5):
        await Worker(app, burst=True, poll_interval=0.02).run()
