"""Flow control on every broker: the rules of :mod:`asynctask.brokers.base` ("Flow control",
"Unique jobs"), one test each, on the broker protocol and then end to end through an App."""

from __future__ import annotations

import anyio
import pytest

from asynctask import App, ConfigurationError, Interval, JobCtx, JobStatus
from asynctask.brokers.base import Broker
from asynctask.flow import Claimed, QueueSettings, RateLimit, TaskLimit
from asynctask.models import Job, OutcomeKind
from asynctask.runtime.scheduler import PeriodicScheduler
from asynctask.testing import FakeClock, wait_until
from asynctask.testing.contract.suite.helpers import (
    APPROX,
    LEASE,
    claim,
    finish,
    get,
    new,
    outcome,
    running,
    status_is,
    workers,
)

ONE = {"t": TaskLimit(concurrency=1)}


def held(jobs: list[Job]) -> bool:
    return isinstance(jobs, Claimed) and jobs.held_back


async def limited(
    broker: Broker, limits: dict[str, TaskLimit], limit: int = 10, queue: str = "q"
) -> list[Job]:
    return await broker.claim(queue, limit, lease=LEASE, worker="w1", limits=limits)


# --- global concurrency ------------------------------------------------------------------


async def test_flow_task_concurrency_caps_running_jobs(broker: Broker, clock: FakeClock) -> None:
    await broker.enqueue([new(clock, f"j{i}") for i in range(5)])
    limits = {"t": TaskLimit(concurrency=2)}
    first = await limited(broker, limits)
    assert [j.id for j in first] == ["j0", "j1"]
    assert held(first), "ready jobs were left behind: the claim says so"
    again = await limited(broker, limits)
    assert again == [] and held(again)
    await finish(broker, first[0], expires_at=clock() + 60)
    assert [j.id for j in await limited(broker, limits)] == ["j2"]
    assert (await get(broker, "j3")).status is JobStatus.QUEUED


async def test_flow_task_concurrency_counts_every_queue(broker: Broker, clock: FakeClock) -> None:
    await broker.enqueue([new(clock, "a", queue="q"), new(clock, "b", queue="q2")])
    assert [j.id for j in await limited(broker, ONE, queue="q")] == ["a"]
    assert await limited(broker, ONE, queue="q2") == []
    assert (await get(broker, "b")).status is JobStatus.QUEUED


async def test_flow_held_back_jobs_keep_their_place(broker: Broker, clock: FakeClock) -> None:
    await broker.enqueue(
        [new(clock, f"t{i}", priority=5) for i in range(3)]
        + [new(clock, f"u{i}", task="u") for i in range(2)]
    )
    first = await limited(broker, ONE)
    assert [j.id for j in first] == ["t0", "u0", "u1"], "the jobs behind a held one are claimed"
    assert held(first)
    await finish(broker, first[0])
    assert [j.id for j in await limited(broker, ONE)] == ["t1"], "a held job keeps its place"


async def test_flow_queue_concurrency_is_stored_in_the_broker(broker: Broker, clock: FakeClock) -> None:
    await broker.set_queue_limits("q", concurrency=2, rate=None)
    await broker.enqueue([new(clock, f"j{i}") for i in range(4)] + [new(clock, "other", queue="q2")])
    first = await claim(broker)  # no limits passed: the queue's own, from the broker
    assert len(first) == 2 and held(first)
    assert await claim(broker) == []
    assert [j.id for j in await claim(broker, queue="q2")] == ["other"], "other queues are not limited"
    await finish(broker, first[1], kind=OutcomeKind.FAILED, expires_at=clock() + 60)
    assert len(await claim(broker)) == 1


async def test_flow_queue_settings_round_trip(broker: Broker) -> None:
    assert await broker.queue_settings("q") == QueueSettings()
    assert await broker.configured_queues() == {}
    rate = RateLimit(30, per=60.0, burst=4)
    limited_settings = await broker.set_queue_limits("q", concurrency=3, rate=rate)
    assert limited_settings == QueueSettings(concurrency=3, rate=rate)
    paused = await broker.set_queue_paused("q", True)
    assert paused == QueueSettings(paused=True, concurrency=3, rate=rate), "a pause keeps the limits"
    assert await broker.set_queue_limits("q", concurrency=None, rate=None) == QueueSettings(paused=True)
    assert await broker.queue_settings("q") == QueueSettings(paused=True), "limits keep the pause"
    assert await broker.configured_queues() == {"q": QueueSettings(paused=True)}
    await broker.set_queue_paused("q", False)
    assert await broker.queue_settings("q") == QueueSettings()
    assert await broker.configured_queues() == {}


# --- pause -----------------------------------------------------------------------------------


async def test_flow_paused_queue_gives_nothing_and_takes_jobs(broker: Broker, clock: FakeClock) -> None:
    await broker.enqueue([new(clock, "before")])
    [running_job] = await claim(broker)
    await broker.enqueue([new(clock, "a")])
    await broker.set_queue_paused("q", True)
    assert await broker.enqueue([new(clock, "b")]) == [True], "publishing into a paused queue works"
    nothing = await claim(broker)
    assert nothing == [] and held(nothing)
    await finish(broker, running_job)  # a running job finishes
    assert (await get(broker, "before")).status is JobStatus.SUCCEEDED
    await broker.set_queue_paused("q", False)
    assert sorted(j.id for j in await claim(broker)) == ["a", "b"]


# --- rate limits -------------------------------------------------------------------------


async def test_flow_task_rate_limit_is_a_token_bucket(broker: Broker, clock: FakeClock) -> None:
    limits = {"t": TaskLimit(rate=RateLimit(10, per=1.0, burst=3))}
    await broker.enqueue([new(clock, f"j{i}") for i in range(10)])
    first = await limited(broker, limits)
    assert len(first) == 3, "a fresh bucket is full: burst tokens"
    assert held(first)
    # Tokens are due back when the bucket holds half of min(burst, limit): 1.5 tokens, in 0.15 s.
    assert isinstance(first, Claimed) and first.retry_at == pytest.approx(clock() + 0.15, abs=APPROX)
    clock.advance(0.1)
    assert len(await limited(broker, limits)) == 1, "one token refilled in 0.1 s"
    clock.advance(5)
    assert len(await limited(broker, limits)) == 3, "the bucket holds at most burst tokens"
    assert len(await broker.list_jobs(status=JobStatus.QUEUED)) == 3, "jobs over the limit stay queued"


async def test_flow_queue_rate_limit_is_shared_by_claimers(broker: Broker, clock: FakeClock) -> None:
    await broker.set_queue_limits("q", concurrency=None, rate=RateLimit(2, per=1.0, burst=2))
    await broker.enqueue([new(clock, f"j{i}") for i in range(6)])
    got = [await broker.claim("q", 1, lease=LEASE, worker=f"w{i}") for i in range(4)]
    assert [len(g) for g in got] == [1, 1, 0, 0]
    clock.advance(1.0)
    assert len(await claim(broker, limit=5)) == 2


async def test_flow_rate_and_concurrency_together(broker: Broker, clock: FakeClock) -> None:
    limits = {"t": TaskLimit(concurrency=2, rate=RateLimit(100, per=1.0, burst=100))}
    await broker.enqueue([new(clock, f"j{i}") for i in range(5)])
    assert len(await limited(broker, limits)) == 2
    assert await limited(broker, limits) == []


# --- waiting -----------------------------------------------------------------------------


async def test_flow_held_wait_ignores_ready_jobs(broker: Broker, clock: FakeClock) -> None:
    await broker.enqueue([new(clock, "a")])
    await broker.set_queue_paused("q", True)
    assert await claim(broker) == []
    started = anyio.current_time()
    await broker.wait_for_jobs("q", 0.3, held=True)
    assert anyio.current_time() - started >= 0.25, "a held wait sleeps although jobs are ready"


async def test_flow_resume_wakes_a_held_wait(broker: Broker, clock: FakeClock) -> None:
    await broker.enqueue([new(clock, "a")])
    await broker.set_queue_paused("q", True)
    assert await claim(broker) == []
    woken = anyio.Event()

    async def wait() -> None:
        await broker.wait_for_jobs("q", 60.0, held=True)
        woken.set()

    async def resumed() -> bool:
        # Resuming again is harmless: it covers a resume sent before the wait began listening.
        await broker.set_queue_paused("q", False)
        return woken.is_set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(wait)
        await wait_until(resumed, interval=0.02)
    assert [j.id for j in await claim(broker)] == ["a"]


# --- unique jobs -------------------------------------------------------------------------


async def test_flow_unique_key_blocks_while_unfinished(broker: Broker, clock: FakeClock) -> None:
    assert await broker.enqueue([new(clock, "a", unique_key="k")]) == [True]
    assert await broker.enqueue([new(clock, "b", unique_key="k"), new(clock, "c", unique_key="k2")]) == [
        False,
        True,
    ]
    holder = await broker.find_unique("k")
    assert holder is not None and holder.id == "a"
    claimed = await claim(broker)
    assert await broker.enqueue([new(clock, "d", unique_key="k")]) == [False], "running still holds it"
    await finish(broker, next(j for j in claimed if j.id == "a"), expires_at=clock() + 60)
    assert await broker.find_unique("k") is None, "a finished job releases its key"
    assert await broker.enqueue([new(clock, "e", unique_key="k")]) == [True]
    assert (await get(broker, "a")).status is JobStatus.SUCCEEDED, "the finished record is kept"


async def test_flow_unique_first_in_batch_wins(broker: Broker, clock: FakeClock) -> None:
    assert await broker.enqueue([new(clock, "a", unique_key="k"), new(clock, "b", unique_key="k")]) == [
        True,
        False,
    ]
    assert await broker.get("b") is None


async def test_flow_unique_key_released_by_cancel_and_delete(broker: Broker, clock: FakeClock) -> None:
    await broker.enqueue([new(clock, "a", unique_key="k", run_at=clock() + 100)])
    assert await broker.enqueue([new(clock, "b", unique_key="k")]) == [False], "a scheduled job holds it"
    await broker.cancel("a", expires_at=clock() + 60)
    assert await broker.enqueue([new(clock, "b", unique_key="k")]) == [True]
    await broker.delete("b")
    assert await broker.enqueue([new(clock, "c", unique_key="k")]) == [True]


async def test_flow_unique_retry_keeps_a_taken_key(broker: Broker, clock: FakeClock) -> None:
    await broker.enqueue([new(clock, "a", unique_key="k", max_retries=0)])
    [job] = await claim(broker)
    await finish(broker, job, kind=OutcomeKind.FAILED, error="boom", expires_at=clock() + 60)
    await broker.enqueue([new(clock, "b", unique_key="k")])
    retried = await broker.retry("a")
    assert retried is not None and retried.status is JobStatus.FAILED, "b holds the key: a stays failed"
    await broker.cancel("b", expires_at=clock() + 60)
    again = await broker.retry("a")
    assert again is not None and again.status is JobStatus.QUEUED
    assert await broker.enqueue([new(clock, "c", unique_key="k")]) == [False], "the retried job holds it"


async def test_flow_unique_spawned_child_is_skipped(broker: Broker, clock: FakeClock) -> None:
    await broker.enqueue([new(clock, "holder", unique_key="k", queue="other"), new(clock, "parent")])
    [parent] = await claim(broker)
    child = new(clock, "child", parent_id="parent", unique_key="k")
    assert await broker.complete([outcome(parent, OutcomeKind.SUCCEEDED, spawn=(child,))]) == [True]
    assert await broker.get("child") is None
    stored = await get(broker, "parent")
    assert stored.pending == 0 and stored.status is JobStatus.SUCCEEDED, (
        "a child not stored is not waited for"
    )


# --- end to end ----------------------------------------------------------------------------


async def test_flow_global_concurrency_across_workers(app: App) -> None:
    active, peak, done = 0, 0, 0
    go = anyio.Event()

    @app.task(global_concurrency=2)
    async def scarce(ctx: JobCtx, n: int) -> None:
        nonlocal active, peak, done
        active += 1
        peak = max(peak, active)
        try:
            await go.wait()
        finally:
            active -= 1
            done += 1

    async with workers(app, count=3, concurrency=4):
        handles = [await scarce.publish(i) for i in range(8)]
        await wait_until(lambda: active == 2)
        for _ in range(20):  # other workers get their turns to claim: none may start a third
            await anyio.sleep(0.01)
            assert active <= 2
        go.set()
        for handle in handles:
            await status_is(app, handle.id, JobStatus.SUCCEEDED)
    assert peak == 2 and done == 8


async def test_flow_rate_limited_jobs_wait_queued(app: App, clock: FakeClock) -> None:
    ran: list[int] = []

    @app.task(rate_limit=RateLimit(1, per=3600.0))
    async def hourly(ctx: JobCtx, n: int) -> None:
        ran.append(n)

    async with running(app):
        handles = [await hourly.publish(i) for i in range(3)]
        await wait_until(lambda: len(ran) == 1)
        await status_is(app, handles[0].id, JobStatus.SUCCEEDED)
        for h in handles[1:]:
            info = await app.get_job(h.id)
            assert info is not None and info.status is JobStatus.QUEUED and info.attempts == 0
        clock.advance(3600)
        await wait_until(lambda: len(ran) == 2)
    assert ran == [0, 1]


async def test_flow_pause_queue_end_to_end(app: App) -> None:
    started = anyio.Event()
    release = anyio.Event()

    @app.task(queue="billing")
    async def bill(ctx: JobCtx, n: int) -> int:
        if n == 0:
            started.set()
            await release.wait()
        return n

    async with running(app):
        first = await bill.publish(0)
        await started.wait()
        assert (await app.pause_queue("billing")).paused
        second = await bill.publish(1)
        release.set()
        assert await first.result(timeout=10) == 0, "a running job finishes"
        for _ in range(10):
            await anyio.sleep(0.01)
            assert (await get(app.broker, second.id)).status is JobStatus.QUEUED
        await app.resume_queue("billing")
        assert await second.result(timeout=10) == 1
    assert (await app.queue_settings("billing")).is_default


async def test_flow_unique_publish_follows_the_active_job(app: App) -> None:
    release = anyio.Event()

    @app.task
    async def refresh(ctx: JobCtx, user: int) -> int:
        await release.wait()
        return user

    async with running(app):
        first = await refresh.publish(7, unique="active")
        again = await refresh.publish(7, unique="active")
        assert (again.id, again.created) == (first.id, False), "the handle follows the active job"
        other = await refresh.publish(8, unique="active")
        assert other.created, "the default key is the payload"
        keyed = await refresh.publish(9, unique_key="user-7")
        assert keyed.created
        assert not (await refresh.publish(10, unique_key="user-7")).created
        release.set()
        assert await first.result(timeout=10) == 7
        after = await refresh.publish(7, unique="active")
        assert after.created and after.id != first.id, "free again once the job finished"
        assert await after.result(timeout=10) == 7
    with pytest.raises(ConfigurationError, match="cannot be unique"):
        async with app:
            await app.group([refresh.spec(1, unique="active")])


async def test_flow_periodic_ticks_do_not_overlap(app: App, clock: FakeClock) -> None:
    clock.now -= clock.now % 60  # on a minute boundary
    release = anyio.Event()
    started: list[str] = []

    @app.periodic(Interval(60))
    async def report(ctx: JobCtx) -> None:
        started.append(ctx.id)
        await release.wait()

    scheduler = PeriodicScheduler(app, app.broker)
    async with running(app, scheduler=False):
        await scheduler.run_once(clock())
        await wait_until(lambda: len(started) == 1)
        for _ in range(3):  # three more ticks come due while the first one runs
            clock.advance(60)
            await scheduler.run_once(clock())
            for _ in range(5):
                await anyio.sleep(0.01)
                assert len(started) == 1, "no tick starts while the previous one runs"
        release.set()
        await wait_until(lambda: len(started) == 2)
        ticks = sorted(await app.list_jobs(task="report"), key=lambda j: j.run_at)
        await wait_until(lambda: _settled(app, ticks[:3]))
    statuses = [(await get(app.broker, j.id)).status for j in ticks]
    assert statuses[:3] == [JobStatus.SUCCEEDED, JobStatus.CANCELLED, JobStatus.CANCELLED]
    assert started[1] == ticks[3].id, "after the long tick, the latest due tick runs"
    skipped = await app.get_job(ticks[1].id)
    assert skipped is not None and skipped.error is not None and "skipped" in skipped.error


async def _settled(app: App, jobs: list[Job]) -> bool:
    found = [await app.get_job(j.id) for j in jobs]
    return all(j is not None and j.status.finished for j in found)


async def test_flow_queue_stats_say_which_queues_are_paused(app: App, clock: FakeClock) -> None:
    @app.task(queue="billing")
    async def bill(ctx: JobCtx) -> None: ...

    async with app:
        await app.pause_queue("idle")  # configured, but holds no job: listed too
        await app.pause_queue("billing")
        await bill.publish(None)
        stats = {s.queue: s for s in await app.queue_stats()}
        assert {q: s.paused for q, s in stats.items()} == {"billing": True, "idle": True}
        assert stats["billing"].count(JobStatus.QUEUED) == 1
        await app.resume_queue("billing")
        await app.resume_queue("idle")
        assert [(s.queue, s.paused) for s in await app.queue_stats()] == [("billing", False)]
