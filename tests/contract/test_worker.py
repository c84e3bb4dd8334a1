"""The worker-level contract: App + Worker semantics, identical on every broker.

The app and the broker share the fake clock, so delays, retries and expiry are exact; only
handler timeouts and heartbeats use real (short) time.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import msgspec
import pytest

from asynctask import (
    App,
    Backoff,
    Fail,
    Fixed,
    JobCtx,
    JobFailed,
    JobStatus,
    PayloadDecodeError,
    Retry,
    Worker,
)
from asynctask.brokers import Broker
from asynctask.models import Job, NewJob
from asynctask.testing import FakeClock, wait_until

pytestmark = pytest.mark.anyio


class Order(msgspec.Struct):
    sku: str
    quantity: int


class Receipt(msgspec.Struct):
    sku: str
    total: int


@pytest.fixture
def app(broker: Broker, clock: FakeClock) -> App:
    return App(broker, clock=clock, retry=Fixed(0), result_ttl=60, failed_ttl=600)


@asynccontextmanager
async def running(app: App, **options: Any) -> AsyncIterator[Worker]:
    options = {"concurrency": 4, "poll_interval": 0.02, "lease": 3.0, "heartbeat": 0.02, **options}
    worker = Worker(app, **options)
    async with app, anyio.create_task_group() as tg:
        await tg.start(worker.run)
        try:
            yield worker
        finally:
            worker.stop()


async def job(app: App, job_id: str) -> Job:
    found = await app.get_job(job_id)
    assert found is not None
    return found


async def status_is(app: App, job_id: str, status: JobStatus) -> None:
    async def check() -> bool:
        found = await app.get_job(job_id)
        return found is not None and found.status is status

    await wait_until(check)


async def test_publish_and_typed_result(app: App) -> None:
    @app.task
    async def checkout(ctx: JobCtx, order: Order) -> Receipt:
        return Receipt(sku=order.sku, total=order.quantity * 3)

    async with running(app):
        handle = await checkout.publish(Order(sku="x", quantity=4))
        assert await handle.result(timeout=10) == Receipt(sku="x", total=12)
        by_name = await app.publish("checkout", {"sku": "y", "quantity": 1})
        assert await app.result(by_name.id, timeout=10) == Receipt(sku="y", total=3)
    info = await job(app, handle.id)
    assert info.status is JobStatus.SUCCEEDED and info.attempts == 1 and info.has_result


async def test_raw_bytes_payload_passes_through(app: App) -> None:
    @app.task
    async def echo(ctx: JobCtx, data: bytes) -> int:
        return len(data) if data == bytes(range(256)) else -1

    async with running(app):
        handle = await echo.publish(bytes(range(256)))
        assert await handle.result(timeout=10) == 256


async def test_retry_then_success_sees_previous_error(app: App) -> None:
    seen: list[tuple[int, str | None]] = []

    @app.task(max_retries=3)
    async def flaky(ctx: JobCtx, n: int) -> int:
        seen.append((ctx.attempt, ctx.previous_error))
        if ctx.attempt < 3:
            raise ValueError(f"boom {ctx.attempt}")
        return n

    async with running(app):
        handle = await flaky.publish(7)
        assert await handle.result(timeout=10) == 7
    assert [a for a, _ in seen] == [1, 2, 3]
    assert seen[0][1] is None
    assert seen[2][1] is not None and "ValueError: boom 2" in seen[2][1]
    assert (await job(app, handle.id)).attempts == 3


async def test_exhausted_retries_go_to_the_dead_letter_and_can_be_retried(app: App) -> None:
    fixed = anyio.Event()

    @app.task(max_retries=1)
    async def broken(ctx: JobCtx) -> str:
        if not fixed.is_set():
            raise RuntimeError("database is down")
        return "ok"

    async with running(app):
        handle = await broken.publish(None)
        with pytest.raises(JobFailed) as info:
            await handle.result(timeout=10)
        assert info.value.status == "failed"
        assert info.value.error is not None and "Traceback" in info.value.error
        assert "RuntimeError: database is down" in info.value.error
        dead = await job(app, handle.id)
        assert dead.status is JobStatus.FAILED and dead.attempts == 2
        assert [j.id for j in await app.list_jobs(status="failed")] == [handle.id]
        fixed.set()
        await app.retry(handle.id)
        assert await handle.result(timeout=10) == "ok"


async def test_fail_stops_retrying(app: App) -> None:
    calls = 0

    @app.task(max_retries=5)
    async def refuse(ctx: JobCtx) -> None:
        nonlocal calls
        calls += 1
        raise Fail("invalid card")

    async with running(app):
        handle = await refuse.publish(None)
        with pytest.raises(JobFailed, match="invalid card"):
            await handle.result(timeout=10)
    assert calls == 1


async def test_retry_after_and_retry_delay_use_the_clock(app: App, clock: FakeClock) -> None:
    @app.task(max_retries=3)
    async def later(ctx: JobCtx, how: str) -> int:
        if ctx.attempt == 1:
            if how == "ctx":
                ctx.retry_after(3600)
                raise ValueError("not yet")
            raise Retry(delay=120)
        return ctx.attempt

    async with running(app):
        a = await later.publish("ctx")
        b = await later.publish("exc")
        await status_is(app, a.id, JobStatus.SCHEDULED)
        await status_is(app, b.id, JobStatus.SCHEDULED)
        assert (await job(app, a.id)).run_at == pytest.approx(clock() + 3600, abs=1e-3)
        assert (await job(app, b.id)).run_at == pytest.approx(clock() + 120, abs=1e-3)
        clock.advance(121)
        assert await b.result(timeout=10) == 2
        assert (await job(app, a.id)).status is JobStatus.SCHEDULED
        clock.advance(3600)
        assert await a.result(timeout=10) == 2


async def test_backoff_policy_delays_grow(app: App, clock: FakeClock) -> None:
    @app.task(max_retries=5, retry=Backoff(base=10, factor=3, jitter=0))
    async def slow(ctx: JobCtx) -> None:
        raise ValueError("again")

    async with running(app):
        handle = await slow.publish(None)
        await status_is(app, handle.id, JobStatus.SCHEDULED)
        assert (await job(app, handle.id)).run_at == pytest.approx(clock() + 10, abs=1e-3)
        clock.advance(10)

        async def second_attempt_done() -> bool:
            j = await app.get_job(handle.id)
            return j is not None and j.attempts == 2 and j.status is JobStatus.SCHEDULED

        await wait_until(second_attempt_done)
        assert (await job(app, handle.id)).run_at == pytest.approx(clock() + 30, abs=1e-3)


async def test_timeout_cancels_the_attempt_and_counts_it(app: App) -> None:
    @app.task(timeout=0.05, max_retries=1)
    async def stuck(ctx: JobCtx) -> str:
        if ctx.attempt == 1:
            await anyio.sleep_forever()
        return "second time lucky"

    async with running(app):
        handle = await stuck.publish(None)
        assert await handle.result(timeout=10) == "second time lucky"
    info = await job(app, handle.id)
    assert info.attempts == 2
    assert info.error is not None and "TimeoutError" in info.error


async def test_cancel_a_queued_job(app: App) -> None:
    ran = False

    @app.task
    async def never(ctx: JobCtx) -> None:
        nonlocal ran
        ran = True

    async with app:
        handle = await never.publish(None, delay=3600)
        cancelled = await app.cancel(handle.id)
        assert cancelled.status is JobStatus.CANCELLED
    async with running(app):
        with pytest.raises(JobFailed, match="cancelled"):
            await handle.result(timeout=10)
    assert not ran


async def test_cancel_a_running_job(app: App) -> None:
    started = anyio.Event()
    cancelled = anyio.Event()

    @app.task
    async def long(ctx: JobCtx) -> None:
        started.set()
        try:
            await anyio.sleep_forever()
        finally:
            cancelled.set()

    async with running(app) as worker:
        handle = await long.publish(None)
        with anyio.fail_after(10):
            await started.wait()
        await app.cancel(handle.id)
        with anyio.fail_after(10):
            await cancelled.wait()
        await status_is(app, handle.id, JobStatus.CANCELLED)
    assert worker.stats.cancelled == 1


async def test_state_survives_a_retry(app: App) -> None:
    pages: list[int] = []

    @app.task(max_retries=2)
    async def crawl(ctx: JobCtx, last: int) -> int:
        start = ctx.state or 0
        for page in range(start, last):
            pages.append(page)
            await ctx.set_state(page + 1)
            if page == 2 and ctx.attempt == 1:
                raise ConnectionError("network blip")
        return len(pages)

    async with running(app):
        handle = await crawl.publish(5)
        assert await handle.result(timeout=10) == 5
    assert pages == [0, 1, 2, 3, 4], "the retry resumed after the last saved page"


async def test_saved_result_is_the_result_when_handler_returns_none(app: App) -> None:
    @app.task
    async def report(ctx: JobCtx) -> str | None:
        await ctx.save("partial report")
        return None

    async with running(app):
        assert await (await report.publish(None)).result(timeout=10) == "partial report"


async def test_idempotent_publish(app: App) -> None:
    runs = 0

    @app.task
    async def once(ctx: JobCtx, n: int) -> int:
        nonlocal runs
        runs += 1
        return n

    async with running(app):
        first = await once.publish(1, job_id="order-42")
        second = await once.publish(2, job_id="order-42")
        assert first.created and not second.created
        assert await first.result(timeout=10) == 1
        third = await once.publish(3, job_id="order-42")
        assert not third.created
    assert runs == 1


async def test_bad_payload_fails_the_job_and_the_worker_survives(app: App, clock: FakeClock) -> None:
    @app.task(max_retries=3)
    async def place(ctx: JobCtx, order: Order) -> int:
        return order.quantity

    with pytest.raises(PayloadDecodeError, match="quantity"):
        async with app:
            await place.publish({"sku": "x", "quantity": "many"})  # type: ignore[arg-type]
    async with running(app):
        # A producer that bypassed validation (another version, another language).
        await app.broker.enqueue(
            [
                NewJob(
                    id="bad",
                    task=place.name,
                    queue="default",
                    payload=b'{"sku":"x","quantity":"many"}',
                    max_retries=3,
                    run_at=clock(),
                )
            ]
        )
        with pytest.raises(JobFailed) as info:
            await app.result("bad", timeout=10)
        assert info.value.error is not None and "$.quantity" in info.value.error
        assert (await job(app, "bad")).attempts == 1, "a payload that cannot decode is not retried"
        good = await place.publish(Order(sku="y", quantity=2))
        assert await good.result(timeout=10) == 2


async def test_unknown_task_at_run_time_is_kept_with_its_error(app: App, clock: FakeClock) -> None:
    @app.task
    async def known(ctx: JobCtx) -> str:
        return "fine"

    async with running(app):
        await app.broker.enqueue(
            [
                NewJob(
                    id="ghost",
                    task="not.registered",
                    queue="default",
                    payload=b"null",
                    max_retries=0,
                    run_at=clock(),
                )
            ]
        )
        with pytest.raises(JobFailed, match=r"not\.registered"):
            await app.result("ghost", timeout=10)
        assert await (await known.publish(None)).result(timeout=10) == "fine"


async def test_handler_raising_cancelled_error_is_a_failure(app: App) -> None:
    import asyncio

    @app.task(max_retries=0)
    async def weird(ctx: JobCtx) -> None:
        raise asyncio.CancelledError()

    async with running(app) as worker:
        handle = await weird.publish(None)
        with pytest.raises(JobFailed, match="CancelledError"):
            await handle.result(timeout=10)
        assert (await (await app.publish(weird, None)).info()) is not None
    assert worker.stats.failed >= 1


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
