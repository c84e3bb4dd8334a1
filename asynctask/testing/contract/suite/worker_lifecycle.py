"""The worker-level contract, part 2 (shutdown, leases, hooks, limits): App + Worker semantics,
identical on every broker.

The app and the broker share the fake clock, so delays, retries and expiry are exact; only
handler timeouts and heartbeats use real (short) time.
"""

from __future__ import annotations

from typing import Any

import anyio
import msgspec
import pytest

from asynctask import (
    App,
    JobCtx,
    JobFailed,
    JobStatus,
    Worker,
)
from asynctask.testing import FakeClock, wait_until
from asynctask.testing.contract.suite.helpers import job, running


class Order(msgspec.Struct):
    sku: str
    quantity: int


class Receipt(msgspec.Struct):
    sku: str
    total: int


async def test_shutdown_grace_lets_running_jobs_finish(app: App) -> None:
    started = anyio.Event()
    release = anyio.Event()

    @app.task
    async def finish_me(ctx: JobCtx) -> str:
        started.set()
        await release.wait()
        return "done"

    async with app:
        handle = await finish_me.publish(None)
        worker = Worker(app, concurrency=2, poll_interval=0.02, shutdown_grace=30)
        async with anyio.create_task_group() as tg:
            await tg.start(worker.run)
            with anyio.fail_after(10):
                await started.wait()
            worker.stop()
            release.set()
        info = await job(app, handle.id)
        assert info.status is JobStatus.SUCCEEDED
        assert worker.stats.succeeded == 1 and worker.stats.released == 0


async def test_cancelling_the_worker_from_outside_is_a_graceful_stop(app: App) -> None:
    started = anyio.Event()

    @app.task
    async def short(ctx: JobCtx) -> str:
        started.set()
        await anyio.sleep(0.3)
        return "finished within the grace period"

    async with app:
        handle = await short.publish(None)
        worker = Worker(app, concurrency=2, poll_interval=0.02, shutdown_grace=10)
        async with anyio.create_task_group() as tg:
            await tg.start(worker.run)
            with anyio.fail_after(10):
                await started.wait()
            tg.cancel_scope.cancel()  # as lifecycle.main does on SIGTERM, or a server's lifespan
        done = await job(app, handle.id)
        assert done.status is JobStatus.SUCCEEDED and worker.stats.succeeded == 1


async def test_cancelling_the_worker_after_its_grace_hands_the_job_back(app: App) -> None:
    started = anyio.Event()

    @app.task
    async def endless(ctx: JobCtx) -> None:
        started.set()
        await anyio.sleep_forever()

    async with app:
        handle = await endless.publish(None)
        worker = Worker(app, concurrency=2, poll_interval=0.02, shutdown_grace=0.05)
        async with anyio.create_task_group() as tg:
            await tg.start(worker.run)
            with anyio.fail_after(10):
                await started.wait()
            tg.cancel_scope.cancel()
        back = await job(app, handle.id)
        assert back.status is JobStatus.QUEUED and back.attempts == 0, "handed back; the attempt not counted"
        assert worker.stats.released == 1


async def test_shutdown_after_grace_hands_leases_back(app: App) -> None:
    started = anyio.Event()

    @app.task
    async def endless(ctx: JobCtx) -> None:
        started.set()
        await anyio.sleep_forever()

    async with app:
        handle = await endless.publish(None)
        worker = Worker(app, concurrency=2, poll_interval=0.02, shutdown_grace=0.05)
        async with anyio.create_task_group() as tg:
            await tg.start(worker.run)
            with anyio.fail_after(10):
                await started.wait()
            worker.stop()
        info = await job(app, handle.id)
        assert info.status is JobStatus.QUEUED, "handed back, not lost"
        assert info.attempts == 0, "the interrupted attempt does not count"
        assert worker.stats.released == 1


async def test_a_zombie_worker_cannot_overwrite_the_new_owner(app: App, clock: FakeClock) -> None:
    started = anyio.Event()
    wake_zombie = anyio.Event()

    @app.task
    async def slow(ctx: JobCtx) -> str:
        started.set()
        await wake_zombie.wait()
        return "zombie"

    # concurrency=1: the stalled attempt holds the only slot, so this worker cannot re-claim the job.
    # heartbeat=3600: the worker really stalls; a heartbeat must not renew the lease on the fake
    # clock between the advance and the rescue.
    async with running(app, lease=30.0, concurrency=1, heartbeat=3600) as worker:
        handle = await slow.publish(None)
        with anyio.fail_after(10):
            await started.wait()
        # The worker stalls past its lease (fake clock), the job is rescued and claimed elsewhere.
        clock.advance(31)
        assert await app.broker.rescue_expired(10) == 1
        [taken] = await app.broker.claim("default", 1, lease=30.0, worker="other")
        wake_zombie.set()  # the zombie finishes and reports: its stale token is rejected
        await wait_until(lambda: worker.stats.lost == 1)
        current = await job(app, handle.id)
        assert current.status is JobStatus.RUNNING and current.token == taken.token
        assert current.result is None


async def test_a_lost_lease_interrupts_the_handler(app: App) -> None:
    started = anyio.Event()
    interrupted = anyio.Event()

    @app.task
    async def slow(ctx: JobCtx) -> None:
        started.set()
        try:
            await anyio.sleep_forever()
        finally:
            interrupted.set()

    async with running(app, concurrency=1) as worker:
        handle = await slow.publish(None)
        with anyio.fail_after(10):
            await started.wait()
        # Deleted behind the worker's back: its next heartbeat learns the lease is gone.
        assert await app.delete(handle.id) is True
        with anyio.fail_after(10):
            await interrupted.wait()
        await wait_until(lambda: worker.stats.lost == 1)
    assert await app.get_job(handle.id) is None, "the interrupted attempt wrote nothing"


async def test_hooks_and_middleware(app: App) -> None:
    events: list[str] = []

    async def on_processing(ctx: JobCtx) -> None:
        events.append(f"processing {ctx.attempt}")

    async def on_success(ctx: JobCtx, result: Any) -> None:
        events.append(f"success {result}")

    async def on_retrying(ctx: JobCtx, exc: BaseException) -> None:
        events.append(f"retrying {exc}")

    async def on_failed(ctx: JobCtx, exc: BaseException) -> None:
        events.append(f"failed {exc}")

    async def timing(ctx: JobCtx, call_next: Any) -> Any:
        events.append("mw before")
        result = await call_next()
        events.append("mw after")
        return result

    app.add_middleware(timing)

    @app.task(
        max_retries=1,
        on_processing=on_processing,
        on_success=on_success,
        on_retrying=on_retrying,
        on_failed=on_failed,
    )
    async def hooked(ctx: JobCtx, fail: bool) -> int:
        if fail or ctx.attempt == 1:
            raise ValueError("x")
        return 5

    async with running(app):
        assert await (await hooked.publish(False)).result(timeout=10) == 5
        with pytest.raises(JobFailed):
            await (await hooked.publish(True)).result(timeout=10)
    assert events[:7] == [
        "processing 1",
        "mw before",
        "retrying x",
        "processing 2",
        "mw before",
        "mw after",
        "success 5",
    ]
    assert events[-1] == "failed x"


async def test_per_task_concurrency_limit(app: App) -> None:
    active = 0
    peak = 0

    @app.task(concurrency=2)
    async def limited(ctx: JobCtx) -> None:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        await anyio.sleep(0.02)
        active -= 1

    async with running(app, concurrency=8):
        handles = await app.publish_many([limited.spec(None) for _ in range(8)])
        for h in handles:
            await h.result(timeout=10)
    assert peak == 2


async def test_queue_concurrency_and_queue_selection(app: App) -> None:
    @app.task(queue="mail")
    async def mail(ctx: JobCtx) -> str:
        return ctx.queue

    @app.task(queue="reports")
    async def report(ctx: JobCtx) -> str:
        return ctx.queue

    async with running(app, queues=["mail"], queue_concurrency={"mail": 1}):
        assert await (await mail.publish(None)).result(timeout=10) == "mail"
        r = await report.publish(None)
        await anyio.sleep(0.1)  # give a wrongly-subscribed worker a chance to take it
        assert (await job(app, r.id)).status is JobStatus.QUEUED


async def test_results_expire_after_their_ttl(app: App, clock: FakeClock) -> None:
    @app.task
    async def quick(ctx: JobCtx) -> int:
        return 1

    async with running(app):
        handle = await quick.publish(None)
        assert await handle.result(timeout=10) == 1
    clock.advance(59)
    assert await app.get_job(handle.id) is not None
    clock.advance(2)
    assert await app.get_job(handle.id) is None


async def test_delete_and_list(app: App) -> None:
    @app.task
    async def parked(ctx: JobCtx) -> None:
        return None

    async with app:
        a = await parked.publish(None, delay=60)
        b = await parked.publish(None, delay=60)
        listed = await app.list_jobs(task=parked.name)
        assert {j.id for j in listed} == {a.id, b.id}
        assert await app.delete(a.id) is True
        assert [j.id for j in await app.list_jobs(status="scheduled")] == [b.id]


async def test_prefetched_jobs_are_handed_back_on_shutdown(app: App) -> None:
    started = anyio.Event()

    @app.task
    async def hold(ctx: JobCtx, n: int) -> None:
        started.set()
        await anyio.sleep_forever()

    async with app:
        handles = await app.publish_many([hold.spec(n) for n in range(3)])
        worker = Worker(app, concurrency=1, prefetch=2, poll_interval=0.02, shutdown_grace=0.05)
        async with anyio.create_task_group() as tg:
            await tg.start(worker.run)
            with anyio.fail_after(10):
                await started.wait()

            async def all_claimed() -> bool:
                return worker.stats.claimed == 3

            await wait_until(all_claimed)
            worker.stop()
        for handle in handles:
            info = await job(app, handle.id)
            assert info.status is JobStatus.QUEUED and info.attempts == 0
        assert worker.stats.released == 3
