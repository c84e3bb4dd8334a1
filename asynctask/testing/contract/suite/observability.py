"""The broker contract for observability: job headers and the worker registry, on the broker
protocol and end to end through an App and its workers."""

from __future__ import annotations

import os
import socket

import anyio
import pytest

from asynctask.app import App
from asynctask.brokers.base import Broker
from asynctask.ctx import JobCtx
from asynctask.errors import ConfigurationError
from asynctask.models import JobStatus, OutcomeKind, WorkerInfo
from asynctask.options import JobSpec
from asynctask.runtime.presence import HEARTBEATS_TO_LIVE
from asynctask.runtime.worker import Worker
from asynctask.testing import FakeClock, wait_until
from asynctask.testing.contract.suite.helpers import APPROX, claim, finish, get, new, running, status_is
from asynctask.testing.severable import Severable

HEADERS = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "tenant": "ünï ☃"}

# --- headers on the broker protocol -------------------------------------------------------------


async def test_headers_are_stored_and_read_back_everywhere(broker: Broker, clock: FakeClock) -> None:
    await broker.enqueue([new(clock, "h", headers=HEADERS), new(clock, "plain")])
    assert (await get(broker, "h")).headers == HEADERS
    assert (await get(broker, "plain")).headers == {}
    listed = {job.id: job.headers for job in await broker.list_jobs()}
    assert listed == {"h": HEADERS, "plain": {}}
    claimed = {job.id: job.headers for job in await claim(broker)}
    assert claimed == {"h": HEADERS, "plain": {}}


async def test_headers_of_spawned_jobs_are_stored(broker: Broker, clock: FakeClock) -> None:
    await broker.enqueue([new(clock, "parent")])
    [parent] = await claim(broker)
    child = new(clock, "parent:0", parent_id="parent", headers={"traceparent": HEADERS["traceparent"]})
    await finish(broker, parent, spawn=(child,))
    assert (await get(broker, "parent:0")).headers == {"traceparent": HEADERS["traceparent"]}
    assert (await get(broker, "parent")).headers == {}


async def test_a_reused_expired_id_takes_the_new_jobs_headers(broker: Broker, clock: FakeClock) -> None:
    await broker.enqueue([new(clock, "again", headers=HEADERS)])
    [job] = await claim(broker)
    await finish(broker, job, OutcomeKind.SUCCEEDED, expires_at=clock() + 10)
    clock.advance(11)
    assert await broker.enqueue([new(clock, "again", headers={"n": "2"})]) == [True]
    assert (await get(broker, "again")).headers == {"n": "2"}
    await finish(broker, (await claim(broker))[0], OutcomeKind.SUCCEEDED, expires_at=clock() + 10)
    clock.advance(11)
    assert await broker.enqueue([new(clock, "again")]) == [True]
    assert (await get(broker, "again")).headers == {}


# --- the worker registry on the broker protocol ------------------------------------------------------


def _worker(worker_id: str, **kw: object) -> WorkerInfo:
    fields: dict[str, object] = {
        "id": worker_id,
        "host": "host-a",
        "pid": 4242,
        "queues": ["q", "emails"],
        "concurrency": 8,
        "version": "1.2.3",
        "started_at": 1_700_000_000.5,
        "running": 2,
        "counts": {"claimed": 5, "succeeded": 3, "failed": 0},
    }
    fields.update(kw)
    return WorkerInfo(**fields)  # type: ignore[arg-type]


async def test_worker_records_are_listed_until_they_expire(broker: Broker, clock: FakeClock) -> None:
    assert await broker.list_workers() == []
    await broker.record_worker(_worker("w2"), ttl=30)
    clock.advance(5)
    await broker.record_worker(_worker("w1", host="host-b", queues=["other"]), ttl=30)
    listed = await broker.list_workers()
    assert [w.id for w in listed] == ["w1", "w2"]
    w1, w2 = listed
    assert (w1.host, w1.queues, w1.pid, w1.concurrency, w1.version) == ("host-b", ["other"], 4242, 8, "1.2.3")
    assert (w2.running, w2.counts) == (2, {"claimed": 5, "succeeded": 3, "failed": 0})
    assert w2.started_at == pytest.approx(1_700_000_000.5, abs=APPROX)
    # The broker stamps the heartbeat and the expiry from its clock.
    assert w2.heartbeat_at == pytest.approx(clock() - 5, abs=APPROX)
    assert w2.expires_at == pytest.approx(clock() + 25, abs=APPROX)
    assert w1.expires_at == pytest.approx(clock() + 30, abs=APPROX)
    clock.advance(24.9)
    assert [w.id for w in await broker.list_workers()] == ["w1", "w2"]
    clock.advance(0.1)  # w2's expiry: gone from reads at that instant
    assert [w.id for w in await broker.list_workers()] == ["w1"]


async def test_recording_a_worker_again_replaces_its_record(broker: Broker, clock: FakeClock) -> None:
    await broker.record_worker(_worker("w"), ttl=10)
    clock.advance(8)
    await broker.record_worker(_worker("w", running=7, counts={"succeeded": 9}), ttl=10)
    clock.advance(8)
    [record] = await broker.list_workers()
    assert (record.running, record.counts) == (7, {"succeeded": 9})
    assert record.heartbeat_at == pytest.approx(clock() - 8, abs=APPROX)
    # A dead worker's record does not come back when another worker records itself.
    clock.advance(2)
    await broker.record_worker(_worker("other"), ttl=10)
    assert [w.id for w in await broker.list_workers()] == ["other"]


async def test_a_removed_worker_is_not_listed(broker: Broker, clock: FakeClock) -> None:
    await broker.record_worker(_worker("a"), ttl=30)
    await broker.record_worker(_worker("b"), ttl=30)
    await broker.remove_worker("a")
    await broker.remove_worker("never-recorded")
    assert [w.id for w in await broker.list_workers()] == ["b"]


# --- through an App and its workers ------------------------------------------------------------------


async def test_publish_headers_reach_the_handler_and_its_subtasks(app: App) -> None:
    seen: dict[str, dict[str, str]] = {}

    @app.task
    async def child(ctx: JobCtx) -> None:
        seen[ctx.id] = dict(ctx.headers)

    @app.task
    async def parent(ctx: JobCtx) -> None:
        seen[ctx.id] = dict(ctx.headers)
        await ctx.spawn(child, headers={"from": "parent"})
        await ctx.spawn(child)

    async with running(app):
        handle = await app.publish(parent, headers={"request-id": "r-1"})
        await status_is(app, handle.id, JobStatus.SUCCEEDED)
        group = await app.group([JobSpec("child", headers={"member": "0"})])
        await status_is(app, group, JobStatus.SUCCEEDED)
    assert seen[handle.id] == {"request-id": "r-1"}
    assert seen[f"{handle.id}:0"] == {"from": "parent"}
    assert seen[f"{handle.id}:1"] == {}
    assert seen[f"{group}:0"] == {"member": "0"}


async def test_bad_headers_are_refused_at_publish(app: App) -> None:
    @app.task
    async def noop(ctx: JobCtx) -> None:
        pass

    async with app:
        for bad in ({"": "x"}, {"k": 1}, ["k"], {"k": "\x00"}, {"k": "\ud800"}, {"k": "x" * 20_000}):
            with pytest.raises(ConfigurationError):
                await app.publish(noop, headers=bad)  # type: ignore[arg-type]
        assert await app.list_jobs() == []


async def test_a_running_worker_is_listed_with_what_it_does(app: App) -> None:
    release = anyio.Event()

    @app.task(queue="q")
    async def hold(ctx: JobCtx) -> None:
        await release.wait()

    async with running(app, concurrency=3, heartbeat=0.02) as worker:
        handle = await app.publish(hold)
        await status_is(app, handle.id, JobStatus.RUNNING)

        async def shows_running() -> bool:
            found = await app.list_workers()
            return len(found) == 1 and found[0].running == 1

        await wait_until(shows_running)
        [record] = await app.list_workers()
        assert record.id == worker.id
        assert (record.host, record.pid) == (socket.gethostname(), os.getpid())
        assert (record.queues, record.concurrency) == (["q"], 3)
        assert record.version
        release.set()
        await status_is(app, handle.id, JobStatus.SUCCEEDED)

        async def counted() -> bool:
            [record] = await app.list_workers()
            return record.counts.get("succeeded") == 1 and record.running == 0

        await wait_until(counted)
    # A worker that stops cleanly takes its record out.
    async with app:
        assert await app.list_workers() == []


async def test_a_dead_worker_is_gone_three_heartbeats_later(app: App, clock: FakeClock) -> None:
    host = Severable(app)
    worker = Worker(host, concurrency=2, heartbeat=0.05, poll_interval=0.02, shutdown_grace=0)
    heartbeat = worker.presence_interval  # the registry's heartbeat: at least a second
    async with app, anyio.create_task_group() as tg:
        await tg.start(worker.run)
        await wait_until(lambda: _listed(app, worker.id))
        host.sever()  # the worker can no longer write anything: as good as dead
        # The fake clock stands still while the worker lives, so its record has not aged yet.
        clock.advance(heartbeat * HEARTBEATS_TO_LIVE - 0.01)
        assert await _listed(app, worker.id)
        clock.advance(0.01)
        assert not await _listed(app, worker.id)
        worker.stop_now()
    # A live worker keeps its record fresh at every heartbeat, however long it runs.
    async with running(app, heartbeat=0.05) as alive:
        await wait_until(lambda: _listed(app, alive.id))
        clock.advance(alive.presence_interval * HEARTBEATS_TO_LIVE * 10)

        async def renewed() -> bool:
            return await _listed(app, alive.id)

        await wait_until(renewed, timeout=alive.presence_interval + 10)


async def _listed(app: App, worker_id: str) -> bool:
    return worker_id in [w.id for w in await app.list_workers()]
