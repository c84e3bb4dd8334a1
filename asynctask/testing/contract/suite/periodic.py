"""Periodic tasks on every broker: many schedulers, one job per tick; the missed-tick policy."""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime

import anyio

from asynctask import App, JobCtx, JobStatus, Worker
from asynctask.brokers.base import Broker
from asynctask.periodic import tick_job_id
from asynctask.runtime.scheduler import PeriodicScheduler
from asynctask.schedule import Cron, Interval
from asynctask.testing import FakeClock, wait_until

# A minute boundary, so Interval(60) and "* * * * *" ticks fall on whole steps of the fake clock.
START = 1_800_000_000.0 - (1_800_000_000.0 % 60)


def periodic_app(broker: Broker, clock: FakeClock) -> App:
    """An App with the default TTLs (tick records outlive the spans these tests cover), at a minute
    boundary of the fake clock."""
    clock.now = START + 0.5
    return App(broker, clock=clock)


async def periodic_jobs(app: App, task: str) -> list[str]:
    return sorted(j.id for j in await app.list_jobs(task=task, limit=10_000))


async def test_three_schedulers_publish_each_tick_once(broker: Broker, clock: FakeClock) -> None:
    app = periodic_app(broker, clock)
    ran: list[str] = []

    # The fake clock jumps past ticks faster than they run: with overlap=False (the default) a tick
    # claimed once the next one is due would be skipped; this test is about publishing each once.
    @app.periodic(Interval(60), overlap=True)
    async def every_minute(ctx: JobCtx) -> None:
        ran.append(ctx.id)

    @app.periodic(Cron("*/5 * * * *"), payload={"kind": "report"}, overlap=True)
    async def five_minutely(ctx: JobCtx, payload: dict[str, str]) -> None:
        assert payload == {"kind": "report"}
        ran.append(ctx.id)

    schedulers = [PeriodicScheduler(app, app.broker) for _ in range(3)]  # as if in three worker processes
    rng = random.Random(7)
    async with app:
        worker = Worker(app, concurrency=8, poll_interval=0.01, scheduler=False)
        async with anyio.create_task_group() as tg:
            await tg.start(worker.run)
            for _ in range(30):  # thirty simulated minutes, in 20 s steps
                for _ in range(3):
                    rng.shuffle(schedulers)
                    for scheduler in schedulers:
                        await scheduler.run_once(clock())
                    clock.advance(20)
            for scheduler in schedulers:  # the loop's next wake-up publishes the upcoming ticks
                await scheduler.run_once(clock())

            async def all_due_ran() -> bool:
                due = [j for j in await app.list_jobs(limit=10_000) if j.run_at <= clock()]
                return all(j.status is JobStatus.SUCCEEDED for j in due)

            await wait_until(all_due_ran)
            worker.stop()

    minute_ids = await periodic_jobs(app, "every_minute")
    # The tick at START (the latest at start-up), every minute after it, and the upcoming one.
    expected = [tick_job_id("every_minute", datetime.fromtimestamp(START + 60 * i, UTC)) for i in range(32)]
    assert minute_ids == sorted(expected)
    counts = Counter(ran)
    assert all(n == 1 for n in counts.values()), "no tick ran twice"
    # Every tick from the latest one at start-up through the end of the span ran exactly once.
    first_minute, end = START, clock()
    assert (
        sum(1 for i in ran if i.startswith("periodic:every_minute:")) == int((end - first_minute) // 60) + 1
    )
    first_five = START + 0.5 - ((START + 0.5) % 300)
    assert (
        sum(1 for i in ran if i.startswith("periodic:five_minutely:")) == int((end - first_five) // 300) + 1
    )
    scheduled = await app.list_jobs(status="scheduled", limit=100)
    assert {j.task for j in scheduled} == {"every_minute", "five_minutely"}, "the next ticks wait"


async def test_missed_ticks_run_the_latest_once(broker: Broker, clock: FakeClock) -> None:
    app = periodic_app(broker, clock)

    @app.periodic(Interval(60))
    async def tick(ctx: JobCtx) -> None:
        return None

    @app.periodic(Interval(60), missed="skip")
    async def skipper(ctx: JobCtx) -> None:
        return None

    async with app:
        first = PeriodicScheduler(app, app.broker)
        await first.run_once(clock())
        assert len(await periodic_jobs(app, "tick")) == 2  # the latest tick (START) and the next
        assert len(await periodic_jobs(app, "skipper")) == 1  # only the next
        clock.advance(10 * 60)  # ten minutes with no scheduler running
        restarted = PeriodicScheduler(app, app.broker)
        await restarted.run_once(clock())
        ids = await periodic_jobs(app, "tick")
        latest = tick_job_id("tick", datetime.fromtimestamp(START + 600, UTC))
        upcoming = tick_job_id("tick", datetime.fromtimestamp(START + 660, UTC))
        assert latest in ids and upcoming in ids
        assert len(ids) == 4, "one catch-up run, not a burst of ten"
        assert len(await periodic_jobs(app, "skipper")) == 2


async def test_a_restart_does_not_rerun_a_tick_that_ran(broker: Broker, clock: FakeClock) -> None:
    app = periodic_app(broker, clock)
    runs = 0

    @app.periodic(Interval(3600))
    async def hourly(ctx: JobCtx) -> None:
        nonlocal runs
        runs += 1

    async with app:
        await PeriodicScheduler(app, app.broker).run_once(clock())
        worker = Worker(app, concurrency=2, poll_interval=0.01, scheduler=False)
        async with anyio.create_task_group() as tg:
            await tg.start(worker.run)
            await wait_until(lambda: runs == 1)
            clock.advance(1800)
            restarted = PeriodicScheduler(app, app.broker)  # as after a process restart
            await restarted.run_once(clock())
            worker.stop()
    assert runs == 1
    ids = await periodic_jobs(app, "hourly")
    assert len(ids) == 2, "the tick that ran, and the next one; the ran tick was not re-published"
    ran = await app.get_job(ids[0])
    assert ran is not None and ran.status is JobStatus.SUCCEEDED


async def test_tick_records_are_kept_for_two_periods(broker: Broker, clock: FakeClock) -> None:
    app = periodic_app(broker, clock)

    @app.periodic(Interval(86400))
    async def daily(ctx: JobCtx) -> None:
        return None

    assert daily.min_ttl == 2 * 86400 + 60
