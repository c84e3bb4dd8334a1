"""The contract under bad input: nothing a handler, its result or a job record does can kill a
worker or fail the neighbours of its batch; options keep the same limits on every broker.
"""

from __future__ import annotations

import logging
import sys
from collections import Counter
from typing import Any

import anyio
import pytest

from asynctask import App, JobCtx, JobFailed, JobStatus
from asynctask.brokers.base import Broker
from asynctask.models import NewJob
from asynctask.options import MAX_PRIORITY, MAX_RETRIES
from asynctask.testing import FakeClock, wait_until
from asynctask.testing.contract.suite.helpers import job, running, status_is


class _Escape(BaseException):
    """A BaseException of the user's own, not an Exception."""


async def test_one_exiting_job_ahead_of_200_good_ones_fails_alone(app: App) -> None:
    runs: Counter[int] = Counter()

    @app.task(max_retries=3)
    async def poison(ctx: JobCtx) -> None:
        sys.exit(3)

    @app.task
    async def good(ctx: JobCtx, n: int) -> int:
        runs[n] += 1
        return n

    async with running(app, concurrency=8):
        bad = await poison.publish(None, priority=10)  # claimed first, in the first batch
        handles = await app.publish_many([good.spec(n) for n in range(200)])
        for n, handle in enumerate(handles):
            assert await handle.result(timeout=30) == n
        await status_is(app, bad.id, JobStatus.FAILED)
    assert runs == Counter(range(200)), "every good job ran exactly once"
    failed = await job(app, bad.id)
    assert failed.attempts == 1, "a BaseException is not retried"
    assert failed.error is not None and "SystemExit" in failed.error


@pytest.mark.parametrize("raised", [KeyboardInterrupt, _Escape])
async def test_a_base_exception_from_a_handler_fails_its_job_and_the_worker_survives(
    app: App, raised: type[BaseException]
) -> None:
    @app.task
    async def escape(ctx: JobCtx) -> None:
        raise raised("boom")

    @app.task
    async def after(ctx: JobCtx) -> str:
        return "still working"

    async with running(app):
        with pytest.raises(JobFailed, match=raised.__name__) as failed:
            await (await escape.publish(None)).result(timeout=10)
        assert failed.value.error is not None and "not an Exception" in failed.value.error
        assert await (await after.publish(None)).result(timeout=10) == "still working"


@pytest.mark.parametrize("make", ["lone surrogate", "self-referencing list", "not JSON"])
async def test_a_result_that_cannot_be_stored_fails_the_job_not_the_worker(app: App, make: str) -> None:
    @app.task
    async def unstorable(ctx: JobCtx) -> Any:
        if make == "lone surrogate":
            return "\ud800"
        if make == "self-referencing list":
            loop: list[Any] = []
            loop.append(loop)
            return loop
        return object()

    @app.task
    async def after(ctx: JobCtx) -> int:
        return 1

    async with running(app):
        with pytest.raises(JobFailed, match="the result could not be encoded") as failed:
            await (await unstorable.publish(None)).result(timeout=10)
        assert failed.value.error is not None
        assert (await job(app, failed.value.job_id)).attempts == 1, "not retried: it would fail again"
        assert await (await after.publish(None)).result(timeout=10) == 1


async def test_corrupt_workflow_meta_fails_the_job_with_a_specific_error(
    app: App, broker: Broker, clock: FakeClock
) -> None:
    @app.task
    async def victim(ctx: JobCtx) -> int:
        return 1

    corrupt = NewJob(
        id="corrupt", task="victim", queue="default", payload=b"null", run_at=clock(), meta=b"\xff{"
    )
    await broker.enqueue([corrupt])
    async with running(app):
        await status_is(app, "corrupt", JobStatus.FAILED)
        assert await (await victim.publish(None)).result(timeout=10) == 1
    failed = await job(app, "corrupt")
    assert failed.error is not None and "workflow meta cannot be decoded" in failed.error


async def test_option_limits_are_the_same_on_every_broker(app: App) -> None:
    @app.task
    async def noop(ctx: JobCtx) -> None: ...

    async with app:
        high = await noop.publish(None, priority=MAX_PRIORITY, max_retries=MAX_RETRIES, timeout=1e9)
        low = await noop.publish(None, priority=-MAX_PRIORITY, max_retries=0, timeout=1e-3)
        stored = await job(app, high.id), await job(app, low.id)
    assert [(j.priority, j.max_retries) for j in stored] == [(MAX_PRIORITY, MAX_RETRIES), (-MAX_PRIORITY, 0)]
    assert stored[0].timeout == pytest.approx(1e9) and stored[1].timeout == pytest.approx(1e-3)


async def test_opens_are_counted(broker: Broker, clock: FakeClock) -> None:
    assert broker.is_open, "the factory yields an opened broker"
    await broker.open()
    await broker.open()
    await broker.close()
    await broker.close()
    assert broker.is_open, "the factory's own open still holds"
    job = NewJob(id="after-reopen", task="t", queue="q", payload=b"1", run_at=clock())
    assert await broker.enqueue([job]) == [True]


async def test_deleting_a_running_job_says_so(app: App, caplog: pytest.LogCaptureFixture) -> None:
    started = anyio.Event()

    @app.task
    async def long(ctx: JobCtx) -> None:
        started.set()
        await anyio.sleep_forever()

    caplog.set_level(logging.WARNING, logger="asynctask")
    async with running(app):
        handle = await long.publish(None)
        with anyio.fail_after(10):
            await started.wait()
        assert await app.delete(handle.id)
        await wait_until(lambda: any("was deleted while it ran" in r.getMessage() for r in caplog.records))
    assert not any("passed to another worker" in r.getMessage() for r in caplog.records)
