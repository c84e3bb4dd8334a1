"""The worker contract, adoption features: sync handlers, Pydantic types, the worker lifespan,
per-exception retry rules and the testing kit's ``drain``, identical on every broker.

No ``from __future__ import annotations`` here: handlers defined inside a test annotate with
classes of that test (the Pydantic models), which only eager annotations can resolve.
"""

import threading
from collections.abc import AsyncIterator
from typing import Any

import anyio
import anyio.from_thread
import msgspec
import pytest

from asynctask import (
    App,
    Done,
    Fail,
    Job,
    JobCtx,
    JobStatus,
    LifespanFailed,
    PayloadDecodeError,
    Retry,
    Worker,
    reentrant,
)
from asynctask.testing import FakeClock, drain, wait_until
from asynctask.testing.contract.suite.helpers import job, running, status_is


class Pool(msgspec.Struct):
    """Stands for what a lifespan opens (a connection pool)."""

    dsn: str
    closed: bool = False
    queries: int = 0


async def test_sync_handler_runs_in_a_worker_thread_with_hooks_and_middleware(app: App) -> None:
    loop_thread = threading.get_ident()
    seen: list[str] = []

    def on_success(ctx: JobCtx, result: int) -> None:  # a sync hook runs in a thread too
        seen.append(f"success {result} in thread: {threading.get_ident() != loop_thread}")

    async def on_processing(ctx: JobCtx) -> None:
        seen.append("processing")

    @app.add_middleware
    async def around(ctx: JobCtx, call_next: Any) -> Any:
        seen.append("before")
        result = await call_next()
        seen.append("after")
        return result

    @app.task(on_processing=on_processing, on_success=on_success)
    def add(ctx: JobCtx, numbers: list[int]) -> int:
        assert threading.get_ident() != loop_thread, "a def handler must not block the event loop"
        anyio.from_thread.run(ctx.set_state, {"seen": len(numbers)})  # async ctx calls, from the thread
        return sum(numbers)

    async with running(app):
        handle = await add.publish([1, 2, 3])
        assert await handle.result(timeout=10) == 6
        await wait_until(lambda: len(seen) == 4)
    record = await job(app, handle.id)
    assert record.status is JobStatus.SUCCEEDED and record.attempts == 1
    assert msgspec.json.decode(record.state or b"null") == {"seen": 3}
    assert seen == ["processing", "before", "after", "success 6 in thread: True"]


async def test_sync_handler_timeout_fails_the_attempt_and_drops_the_late_result(app: App) -> None:
    release = threading.Event()
    finished = threading.Event()
    second_started = threading.Event()

    @app.task(timeout=0.2, max_retries=0)
    def stuck(ctx: JobCtx) -> str:
        release.wait(10)  # a thread cannot be killed: it runs on after the timeout
        finished.set()
        return "late"

    @app.task
    def after(ctx: JobCtx) -> str:
        second_started.set()
        return "ran"

    async with running(app, concurrency=1):
        handle = await stuck.publish(None)
        await status_is(app, handle.id, JobStatus.FAILED)
        # The abandoned thread still holds the worker's only thread: the next sync job waits.
        waiting = await after.publish(None)
        await status_is(app, waiting.id, JobStatus.RUNNING)
        assert not second_started.is_set()
        release.set()
        assert await waiting.result(timeout=10) == "ran"
        assert finished.is_set()
    record = await job(app, handle.id)
    assert record.status is JobStatus.FAILED and record.result is None, "the late result was dropped"
    assert record.error is not None and "TimeoutError" in record.error


async def test_sync_on_finish_pipeline_and_incremental_steps_run_in_threads(app: App) -> None:
    loop_thread = threading.get_ident()
    threads: set[str] = set()

    def note(kind: str) -> None:
        if threading.get_ident() != loop_thread:
            threads.add(kind)

    @app.task
    async def parent(ctx: JobCtx, n: int) -> None:
        for i in range(n):
            await ctx.spawn(child, i)

    @app.task
    def child(ctx: JobCtx, i: int) -> int:
        return i * 10

    @parent.on_finish
    def gather(ctx: JobCtx, children: list[Job]) -> int:
        note("on_finish")
        return sum(ctx.decode_result(c) for c in children)

    def parse(ctx: JobCtx, text: str) -> list[int]:
        note("step")
        return [int(part) for part in text.split(",")]

    async def total(ctx: JobCtx, numbers: list[int]) -> int:
        return sum(numbers)

    etl = app.pipeline("etl", [parse, reentrant(total, times=2)])

    @app.incremental()
    def countdown(ctx: JobCtx, n: int) -> int | Done[str]:
        note("incremental")
        return Done("liftoff") if n == 0 else n - 1

    async with running(app):
        handles = [await parent.publish(3), await etl.publish("1,2,3"), await countdown.publish(3)]
        results = [await h.result(timeout=10) for h in handles]
    assert results == [30, 6, "liftoff"]
    assert threads == {"on_finish", "step", "incremental"}


async def test_pydantic_payload_and_result_round_trip_and_validate_at_publish(app: App) -> None:
    pydantic = pytest.importorskip("pydantic")

    class Order(pydantic.BaseModel):  # type: ignore[name-defined,misc]
        sku: str
        quantity: int = pydantic.Field(gt=0)

    class Receipt(pydantic.BaseModel):  # type: ignore[name-defined,misc]
        sku: str
        total: int

    @app.task
    async def checkout(ctx: JobCtx, order: Order) -> Receipt:
        assert isinstance(order, Order)
        return Receipt(sku=order.sku, total=order.quantity * 3)

    @app.task
    def checkout_sync(ctx: JobCtx, order: Order) -> Receipt:
        return Receipt(sku=order.sku, total=order.quantity)

    async with running(app):
        handle = await checkout.publish(Order(sku="x", quantity=4))
        assert await handle.result(timeout=10) == Receipt(sku="x", total=12)
        by_name = await app.publish("checkout_sync", {"sku": "y", "quantity": 2})
        assert await app.result(by_name.id, timeout=10) == Receipt(sku="y", total=2)
        with pytest.raises(
            PayloadDecodeError, match=r"payload does not match Order: quantity: Input should be"
        ):
            await app.publish("checkout", {"sku": "z", "quantity": 0})
    record = await job(app, handle.id)
    assert msgspec.json.decode(record.payload) == {"sku": "x", "quantity": 4}
    assert msgspec.json.decode(record.result or b"null") == {"sku": "x", "total": 12}


async def test_lifespan_resources_reach_every_handler_and_close_after_the_drain(app: App) -> None:
    events: list[str] = []
    started, go = anyio.Event(), anyio.Event()

    @app.lifespan
    async def resources() -> AsyncIterator[Pool]:
        pool = Pool(dsn="db://test")
        events.append("open")
        try:
            yield pool
        finally:
            pool.closed = True
            events.append(f"close after {pool.queries} queries")

    @app.task
    async def query(ctx: JobCtx, n: int) -> int:
        pool = ctx.resources_as(Pool)
        if n == 99:
            started.set()
            await go.wait()
        assert not pool.closed
        pool.queries += 1
        return n

    @app.task
    def query_sync(ctx: JobCtx, n: int) -> bool:
        ctx.resources.queries += 1
        return ctx.resources is ctx.resources_as(Pool)

    async with running(app, concurrency=4, shutdown_grace=10) as worker:
        handles = [await query.publish(n) for n in range(10)]
        sync = await query_sync.publish(1)
        assert [await h.result(timeout=10) for h in handles] == list(range(10))
        assert await sync.result(timeout=10) is True
        assert events == ["open"], "entered once per worker, not per job"
        last = await query.publish(99)
        await started.wait()
        worker.stop()  # the last job still runs: the lifespan closes only after it finished
        assert events == ["open"]
        go.set()
    assert events == ["open", "close after 12 queries"]
    assert (await job(app, last.id)).status is JobStatus.SUCCEEDED


async def test_lifespan_failure_stops_the_worker_before_it_claims(app: App) -> None:
    class Database:  # the other form: a class (or function) returning an async context manager
        async def __aenter__(self) -> Pool:
            raise ConnectionRefusedError("the database is down\nsecond line")

        async def __aexit__(self, *exc_info: object) -> None:
            return None

    app.lifespan(Database)

    @app.task
    async def anything(ctx: JobCtx) -> None:
        return None

    async with app:
        handle = await anything.publish(None)
        with pytest.raises(LifespanFailed) as failure:
            await Worker(app, poll_interval=0.01).run()
        assert str(failure.value) == (
            "the worker lifespan "
            "test_lifespan_failure_stops_the_worker_before_it_claims.<locals>.Database failed while "
            "starting: ConnectionRefusedError: the database is down second line"
        )
        record = await job(app, handle.id)
        assert record.status is JobStatus.QUEUED and record.attempts == 0, "nothing was claimed"


async def test_retry_on_and_no_retry_on_compose_with_retry_and_fail(app: App) -> None:
    class Flaky(Exception):
        pass

    runs: dict[str, int] = {}

    def count(ctx: JobCtx) -> int:
        runs[ctx.task] = runs.get(ctx.task, 0) + 1
        return runs[ctx.task]

    @app.task(max_retries=3, retry_on=(TimeoutError, Flaky))
    async def listed(ctx: JobCtx) -> str:
        return "ok" if count(ctx) == 3 else _raise(Flaky("again"))

    @app.task(max_retries=3, retry_on=TimeoutError)
    async def unlisted(ctx: JobCtx) -> None:
        count(ctx)
        raise ValueError("not a timeout")

    @app.task(max_retries=3, retry_on=(OSError,), no_retry_on=(FileNotFoundError,))
    async def carved(ctx: JobCtx) -> None:
        count(ctx)
        raise FileNotFoundError("gone")

    @app.task(max_retries=3, no_retry_on=ValueError)
    async def explicit(ctx: JobCtx) -> str:
        if count(ctx) == 1:
            raise Retry()  # an explicit Retry is never filtered
        if runs["explicit"] == 2:
            raise ConnectionError("retried: not in no_retry_on")
        raise Fail("Fail still fails")

    async with running(app):
        handles = {t.name: await t.publish(None) for t in (listed, unlisted, carved, explicit)}
        assert await handles["listed"].result(timeout=10) == "ok"
        for name in ("unlisted", "carved", "explicit"):
            await status_is(app, handles[name].id, JobStatus.FAILED)
    assert runs == {"listed": 3, "unlisted": 1, "carved": 1, "explicit": 3}
    unlisted_error = (await job(app, handles["unlisted"].id)).error or ""
    assert unlisted_error.startswith("ValueError is not in the task's retry_on: not retried")
    carved_error = (await job(app, handles["carved"].id)).error or ""
    assert carved_error.startswith("FileNotFoundError is in the task's no_retry_on: not retried")


async def test_drain_runs_retries_delays_and_spawned_jobs_on_the_fake_clock(
    app: App, clock: FakeClock
) -> None:
    @app.task(max_retries=2)
    async def flaky(ctx: JobCtx, n: int) -> int:
        if ctx.attempt < 3:
            raise Retry(delay=600)  # ten minutes, twice: the drain moves the clock
        return n

    @app.task
    async def fan_out(ctx: JobCtx, n: int) -> None:
        for i in range(n):
            await ctx.spawn(flaky, i)

    @fan_out.on_finish
    async def total(ctx: JobCtx, children: list[Any]) -> int:
        return sum(ctx.decode_result(child) for child in children)

    start = clock()
    async with app:
        later = await flaky.publish(100, delay=3600)
        parent = await fan_out.publish(3)
    done = await drain(app)
    assert clock() - start >= 3600 + 1200
    by_id = {j.id: j for j in done}
    assert {j.status for j in done} == {JobStatus.SUCCEEDED}
    assert len(done) == 5 and later.id in by_id and parent.id in by_id
    assert done[-1].id == later.id, "finished in order: the delayed job last"
    assert app.decode_result(by_id[parent.id]) == 0 + 1 + 2


def _raise(exc: Exception) -> Any:
    raise exc
