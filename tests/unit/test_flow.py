"""Flow control's pure parts: parsing limits, validating options, the bucket arithmetic, unique keys,
and which tick of a non-overlapping periodic task runs."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from asynctask import App, ConfigurationError, Interval, InvalidName, JobCtx, MemoryBroker
from asynctask.cli.queues import describe
from asynctask.flow import (
    Claimed,
    QueueSettings,
    RateLimit,
    TaskLimit,
    parse_rate,
    refill,
    tokens_due_at,
    unique_key,
)
from asynctask.models import Job, JobStatus, NewJob, Outcome, OutcomeKind
from asynctask.periodic import tick_job_id
from asynctask.runtime.overlap import skip_reason
from asynctask.testing import FakeClock, drain

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def app() -> App:
    clock = FakeClock(start=1_800_000_000.0)
    return App(MemoryBroker(clock=clock), clock=clock)


# --- parsing -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "count", "per", "burst"),
    [
        ("100/s", 100, 1.0, 10),
        ("50/s", 50, 1.0, 5),
        ("5/s", 5, 1.0, 1),
        ("30/m", 30, 60.0, 1),
        ("1000/h", 1000, 3600.0, 1),
        (" 7 / min ", 7, 60.0, 1),
        ("2/second", 2, 1.0, 1),
        ("36000/hour", 36000, 3600.0, 1),
    ],
)
def test_parse_rate(text: str, count: int, per: float, burst: int) -> None:
    assert parse_rate(text) == RateLimit(count, per=per, burst=burst)


@pytest.mark.parametrize("text", ["", "100", "100/d", "1.5/s", "-3/s", "0/s", "s/100", "100/ s/", "ten/s"])
def test_parse_rate_refuses(text: str) -> None:
    with pytest.raises(ConfigurationError):
        parse_rate(text)


def test_parse_rate_names_the_forms() -> None:
    with pytest.raises(ConfigurationError, match=r"'N/s', 'N/m' or 'N/h'"):
        parse_rate("100 per second")


def test_rate_limit_values() -> None:
    rate = RateLimit(600, per=60, burst=600)
    assert rate.per == 60.0 and rate.per_second == 10.0
    assert str(rate) == "600/m (burst 600)" and str(parse_rate("50/s")) == "50/s"
    assert parse_rate(rate) is rate
    for bad in ({"count": 0}, {"count": True}, {"per": 0}, {"per": float("nan")}, {"burst": -1}):
        with pytest.raises(ConfigurationError):
            RateLimit(**{"count": 1, **bad})


def test_bucket_arithmetic() -> None:
    rate = RateLimit(10, per=1.0, burst=4)
    assert refill(None, None, 100.0, rate) == 4.0, "a bucket never used is full"
    assert refill(0.0, 100.0, 100.25, rate) == pytest.approx(2.5, abs=1e-4)
    assert refill(1.0, 100.0, 200.0, rate) == 4.0, "capped at burst"
    assert refill(1.0, 100.0, 99.0, rate) == pytest.approx(1.0, abs=1e-4), "a clock going back adds nothing"
    # Wake when half of min(burst, wanted) is there, at least one token.
    assert tokens_due_at(0.0, 100.0, rate, want=10) == pytest.approx(100.2)
    assert tokens_due_at(0.5, 100.0, rate, want=1) == pytest.approx(100.05)


def test_claimed_is_a_list() -> None:
    claimed = Claimed([], held_back=True, retry_at=5.0)
    assert claimed == [] and isinstance(claimed, list)
    assert repr(claimed) == "Claimed([], held_back=True, retry_at=5.0)"
    assert not Claimed().held_back


def test_queue_settings_describe() -> None:
    assert QueueSettings().is_default
    assert describe(QueueSettings()) == "active"
    settings = QueueSettings(paused=True, concurrency=3, rate=parse_rate("50/s"))
    assert not settings.is_default and settings.limited
    assert describe(settings) == "paused global_concurrency=3 rate_limit=50/s"


# --- options -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"global_concurrency": 0}, "global_concurrency must be an integer from 1"),
        ({"global_concurrency": 2.5}, "global_concurrency must be an integer"),
        ({"global_concurrency": True}, "global_concurrency must be an integer"),
        ({"rate_limit": "fast"}, "invalid rate limit"),
        ({"rate_limit": 100}, "invalid rate limit"),
        ({"unique": "always"}, "unique must be 'active'"),
    ],
)
def test_task_options_are_checked(app: App, options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):

        @app.task(**options)
        async def work(ctx: JobCtx) -> None: ...


def test_task_limits_reach_the_worker(app: App) -> None:
    @app.task(global_concurrency=2, rate_limit="10/s")
    async def both(ctx: JobCtx) -> None: ...

    @app.task
    async def free(ctx: JobCtx) -> None: ...

    @app.periodic(Interval(60))
    async def tick(ctx: JobCtx) -> None: ...

    @app.periodic(Interval(60), overlap=True)
    async def loose(ctx: JobCtx) -> None: ...

    assert app.task_limits() == {
        "both": TaskLimit(concurrency=2, rate=RateLimit(10, per=1.0)),
        "tick": TaskLimit(concurrency=1),
    }
    assert app.worker().registry.task_limits() == app.task_limits()


def test_overlap_false_is_a_singleton(app: App) -> None:
    with pytest.raises(ConfigurationError, match="overlap=False runs one tick at a time"):

        @app.periodic(Interval(60), global_concurrency=2)
        async def tick(ctx: JobCtx) -> None: ...

    @app.periodic(Interval(60), global_concurrency=2, overlap=True)
    async def two(ctx: JobCtx) -> None: ...

    assert two.limit == TaskLimit(concurrency=2)


def test_unique_keys(app: App) -> None:
    @app.task
    async def refresh(ctx: JobCtx, user: int) -> None: ...

    @app.task(unique="active")
    async def always(ctx: JobCtx, user: int) -> None: ...

    def key(spec: Any) -> str | None:
        job: NewJob = app.build_job(spec)
        return job.unique_key

    assert key(refresh.spec(1)) is None
    assert key(refresh.spec(1, unique="active")) == key(refresh.spec(1, unique="active"))
    assert key(refresh.spec(1, unique="active")) != key(refresh.spec(2, unique="active"))
    assert (
        key(refresh.spec(1, unique_key="u-1")) == key(refresh.spec(2, unique_key="u-1")) == "refresh|key:u-1"
    )
    assert key(always.spec(1)) == unique_key("always", None, b"1")
    assert key(always.spec(1)) != key(refresh.spec(1, unique="active")), "the task is part of the key"
    with pytest.raises(InvalidName, match="invalid unique_key"):
        key(refresh.spec(1, unique_key="has space"))
    with pytest.raises(ConfigurationError, match="unique must be 'active'"):
        key(refresh.spec(1, unique="yes"))  # type: ignore[arg-type]


async def test_chains_refuse_unique_members(app: App) -> None:
    @app.task
    async def link(ctx: JobCtx, n: int) -> None: ...

    async with app:
        with pytest.raises(ConfigurationError, match="jobs of a chain cannot be unique"):
            await app.chain([link.spec(1), link.spec(2, unique_key="k")])


# --- overlapping ticks -----------------------------------------------------------------------

T0 = 1_800_000_000.0 - (1_800_000_000.0 % 60)


def tick_job(task: str, at: float, *, status: JobStatus = JobStatus.RUNNING, **kw: Any) -> Job:
    tick = datetime.fromtimestamp(at, UTC)
    fields: dict[str, Any] = {"attempts": 1, "created_at": at - 60, **kw}
    return Job(
        id=tick_job_id(task, tick),
        task=task,
        queue="default",
        payload=b"null",
        status=status,
        run_at=at,
        **fields,
    )


@pytest.mark.parametrize("missed", ["latest", "skip"])
async def test_a_stale_tick_is_skipped(app: App, missed: str) -> None:
    @app.periodic(Interval(60), missed=missed)  # type: ignore[arg-type]
    async def report(ctx: JobCtx) -> None: ...

    periodic = app.periodic_tasks["report"]
    on_time = await skip_reason(periodic, tick_job("report", T0), app.broker, T0 + 59)
    assert on_time is None
    late = await skip_reason(periodic, tick_job("report", T0), app.broker, T0 + 60)
    assert late is not None and "could only start once the tick of" in late
    retried = await skip_reason(periodic, tick_job("report", T0, attempts=2), app.broker, T0 + 600)
    assert retried is None, "a retry continues a tick that started"


async def test_missed_skip_skips_a_tick_that_waited(app: App) -> None:
    @app.periodic(Interval(60), missed="skip")
    async def report(ctx: JobCtx) -> None: ...

    @app.periodic(Interval(60))
    async def latest(ctx: JobCtx) -> None: ...

    async with app:
        for task in ("report", "latest"):
            previous = tick_job(task, T0 - 60)
            await app.broker.enqueue(
                [NewJob(id=previous.id, task=task, queue="default", payload=b"null", run_at=T0 - 60)]
            )
            [claimed] = await app.broker.claim("default", 1, lease=30, worker="w")
            app.clock.now = T0 + 1  # type: ignore[attr-defined]  # it finished 1 s into the next tick
            await app.broker.complete(
                [
                    Outcome(
                        job_id=claimed.id,
                        token=claimed.token,
                        kind=OutcomeKind.SUCCEEDED,
                        expires_at=T0 + 600,
                    )
                ]
            )
        waited = await skip_reason(app.periodic_tasks["report"], tick_job("report", T0), app.broker, T0 + 1)
        assert waited is not None and "came due while the tick of" in waited
        assert (
            await skip_reason(app.periodic_tasks["latest"], tick_job("latest", T0), app.broker, T0 + 1)
            is None
        )


async def test_drain_runs_limited_tasks_and_leaves_paused_queues(app: App) -> None:
    @app.task(global_concurrency=1, rate_limit=RateLimit(100, per=1.0, burst=100))
    async def scarce(ctx: JobCtx, n: int) -> int:
        return n

    @app.task(queue="billing")
    async def bill(ctx: JobCtx, n: int) -> int:
        return n

    async with app:
        handles = [await scarce.publish(i) for i in range(3)]
        await app.pause_queue("billing")
        held = await bill.publish(1)
        done = await drain(app, timeout=10)
        assert sorted(j.id for j in done) == sorted(h.id for h in handles)
        info = await held.info()
        assert info is not None and info.status is JobStatus.QUEUED, "a paused queue's jobs wait"
