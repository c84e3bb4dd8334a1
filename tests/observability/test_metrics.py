"""Prometheus metrics of an app and its worker in this process, on every broker."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from asynctask import App, JobCtx, JobStatus
from asynctask.errors import MissingExtra
from asynctask.metrics import Metrics
from asynctask.testing import FakeClock, wait_until
from asynctask.testing.contract.suite.helpers import running, status_is
from asynctask.testing.severable import Severable

pytestmark = pytest.mark.anyio


@pytest.fixture
def metrics(app: App) -> Iterator[Metrics]:
    metrics = Metrics(app, registry=CollectorRegistry(), max_age=0)
    yield metrics
    metrics.close()


def value(metrics: Metrics, name: str, **labels: str) -> float:
    found = metrics.registry.get_sample_value(name, labels)
    return 0.0 if found is None else found


async def test_jobs_attempts_and_outcomes_are_counted(app: App, metrics: Metrics, clock: FakeClock) -> None:
    @app.task(queue="work")
    async def ok(ctx: JobCtx, n: int) -> int:
        return n

    @app.task(queue="work", max_retries=0)
    async def broken(ctx: JobCtx) -> None:
        raise RuntimeError("no")

    @app.task(queue="work", max_retries=1)
    async def flaky(ctx: JobCtx) -> None:
        if ctx.attempt == 1:
            raise RuntimeError("first attempt")

    async with running(app, queues=["work"], concurrency=4) as worker:
        assert value(metrics, "asynctask_worker_capacity") == 4
        handles = [await app.publish(ok, n) for n in range(5)]
        handles += [await app.publish(broken), await app.publish(flaky)]
        again = await app.publish(ok, 0, job_id=handles[0].id)  # an existing id: not published again
        assert not again.created
        for handle in handles:
            await status_is(
                app, handle.id, JobStatus.SUCCEEDED if handle.task != "broken" else JobStatus.FAILED
            )

        def outcome(task: str, name: str) -> float:
            return value(metrics, "asynctask_job_outcomes_total", task=task, queue="work", outcome=name)

        # Counted once the broker took the outcome: poll the registry, not the job.
        await wait_until(lambda: outcome("flaky", "succeeded") == 1 and outcome("broken", "failed") == 1)
        assert outcome("ok", "succeeded") == 5
        assert outcome("flaky", "retried") == 1
        assert value(metrics, "asynctask_jobs_published_total", task="ok", queue="work") == 5
        assert value(metrics, "asynctask_jobs_started_total", task="ok", queue="work") == 5
        assert value(metrics, "asynctask_jobs_started_total", task="flaky", queue="work") == 2
        assert value(metrics, "asynctask_job_run_seconds_count", task="ok", queue="work") == 5
        assert value(metrics, "asynctask_job_queue_wait_seconds_count", task="flaky", queue="work") == 2
        assert value(metrics, "asynctask_jobs_running", task="ok", queue="work") == 0
        assert value(metrics, "asynctask_broker_call_seconds_count", operation="claim") >= 1
        assert value(metrics, "asynctask_broker_call_seconds_count", operation="complete") >= 1
        assert worker.stats.succeeded == 6
    assert value(metrics, "asynctask_worker_capacity") == 0


async def test_queue_depth_and_oldest_ready_job_are_read_from_the_broker(
    app: App, metrics: Metrics, clock: FakeClock
) -> None:
    @app.task(queue="parked")
    async def later(ctx: JobCtx) -> None:
        pass

    async with app:
        first = await app.publish(later)
        clock.advance(4)
        await app.publish(later)
        await app.publish(later, delay=60)
        clock.advance(3)
        text = (await metrics.scrape()).decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    depth = {
        s.labels["status"]: s.value
        for s in families["asynctask_queue_jobs"].samples
        if s.labels["queue"] == "parked"
    }
    assert depth["queued"] == 2 and depth["scheduled"] == 1 and depth["running"] == 0
    [age] = [
        s.value
        for s in families["asynctask_queue_oldest_ready_age_seconds"].samples
        if s.labels["queue"] == "parked"
    ]
    assert age == pytest.approx(7.0)
    assert [s.value for s in families["asynctask_queue_stats_up"].samples] == [1.0]
    # Another process changes the queue: the next scrape reads the broker again.
    async with app:
        await app.delete(first.id)
        await metrics.refresh()
    assert value(metrics, "asynctask_queue_jobs", queue="parked", status="queued") == 1
    assert value(metrics, "asynctask_queue_oldest_ready_age_seconds", queue="parked") == pytest.approx(3.0)


async def test_a_failed_read_keeps_the_last_numbers_and_says_so(app: App, clock: FakeClock) -> None:
    host = Severable(app)
    cut_off = App(host.broker, clock=clock)  # the same broker, cut off below
    metrics = Metrics(cut_off, registry=CollectorRegistry(), max_age=0)

    @app.task
    async def noop(ctx: JobCtx) -> None:
        pass

    try:
        async with app, cut_off:
            await app.publish(noop)
            await metrics.refresh()
            assert value(metrics, "asynctask_queue_stats_up") == 1
            host.sever()
            await metrics.refresh()
            assert value(metrics, "asynctask_queue_stats_up") == 0
            assert value(metrics, "asynctask_queue_jobs", queue="default", status="queued") == 1
    finally:
        metrics.close()


async def test_reads_are_cached_for_max_age(app: App) -> None:
    metrics = Metrics(app, registry=CollectorRegistry(), max_age=3600)
    try:

        @app.task
        async def noop(ctx: JobCtx) -> None:
            pass

        async with app:
            await metrics.refresh()
            await app.publish(noop)
            await metrics.refresh()
        assert value(metrics, "asynctask_queue_jobs", queue="default", status="queued") == 0
    finally:
        metrics.close()
    assert metrics.jobs not in app.events.observers


def test_the_extra_is_named_when_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from asynctask.brokers import require

    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    with pytest.raises(MissingExtra, match=r"asynctask\[metrics\]"):
        require("prometheus_client", "metrics")
