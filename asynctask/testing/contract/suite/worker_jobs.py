"""The worker-level contract, part 1 (running jobs): App + Worker semantics, identical on every broker.

The app and the broker share the fake clock, so delays, retries and expiry are exact; only
handler timeouts and heartbeats use real (short) time.
"""

from __future__ import annotations

import anyio
import msgspec
import pytest

from asynctask import (
    App,
    Backoff,
    Fail,
    JobCtx,
    JobFailed,
    JobStatus,
    PayloadDecodeError,
    Retry,
)
from asynctask.models import NewJob
from asynctask.testing import FakeClock, wait_until
from asynctask.testing.contract.suite.helpers import job, running, status_is


class Order(msgspec.Struct):
    sku: str
    quantity: int


class Receipt(msgspec.Struct):
    sku: str
    total: int


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
