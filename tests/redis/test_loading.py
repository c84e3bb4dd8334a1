"""How asynctask.lua reaches the server (loader.py): a Functions library, EVALSHA where refused,
reloaded when lost; and the bulk enqueue's per-slice shortcuts (asynctask.lua ``enqueue``)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from redis.asyncio import Redis

from asynctask.brokers.redis import RedisBroker
from asynctask.brokers.redis.scripts import SOURCE
from asynctask.models import JobStatus, Lease, Outcome, OutcomeKind, WorkerInfo
from asynctask.testing import FakeClock
from tests.backend_redis import delete_prefix
from tests.redis.helpers import broker_for, job
from tests.redis.server import RedisServer

pytestmark = pytest.mark.anyio


def runner(broker: RedisBroker) -> object:
    return broker._scripts._run  # the one place the loader is visible


async def publish_and_run(broker: RedisBroker, clock: FakeClock, prefix: str, n: int = 3) -> None:
    """A few jobs through enqueue, claim and complete, checked at each step."""
    jobs = [job(f"{prefix}{i}", clock()) for i in range(n)]
    assert await broker.enqueue(jobs) == [True] * n
    assert await broker.enqueue(jobs[:1]) == [False]
    claimed = await broker.claim("q", n, lease=30, worker="w")
    assert [j.id for j in claimed] == [j.id for j in jobs]
    outcomes = [Outcome(job_id=j.id, token=j.token, kind=OutcomeKind.SUCCEEDED) for j in claimed]
    assert await broker.complete(outcomes) == [True] * n
    assert (await broker.get(jobs[0].id)).status is JobStatus.SUCCEEDED  # type: ignore[union-attr]


async def test_commands_run_as_a_function_named_by_content(prefix: str) -> None:
    clock = FakeClock()
    broker = broker_for(prefix, clock=clock)
    await broker.open()
    try:
        await publish_and_run(broker, clock, "a")
        run = runner(broker)
        assert run.functions is True  # type: ignore[attr-defined]
        assert run.function.startswith("asynctask_")  # type: ignore[attr-defined]
        assert await broker._client.function_list(library=run.function)  # type: ignore[attr-defined]
    finally:
        await broker.close()


async def test_state_of_one_call_does_not_leak_into_the_next(prefix: str) -> None:
    # A library keeps its upvalues between calls: two brokers (two prefixes) and a failing call
    # interleaved must each see only their own keys.
    clock = FakeClock()
    first, second = broker_for(prefix, clock=clock), broker_for(prefix + "x", clock=clock)
    await first.open()
    await second.open()
    try:
        assert await first.enqueue([job("same", clock())]) == [True]
        assert await second.enqueue([job("same", clock())]) == [True]
        with pytest.raises(Exception, match="key layout mismatch"):
            await first._client.fcall(
                runner(first).function, 1, "wrong", "peek", prefix, "1.0", "0" * 16, "q", 1
            )  # type: ignore[attr-defined]
        assert [j.id for j in await second.claim("q", 5, lease=30, worker="w")] == ["same"]
        assert [j.id for j in await first.claim("q", 5, lease=30, worker="w")] == ["same"]
    finally:
        await delete_prefix(second._client, second)
        await first.close()
        await second.close()


async def test_a_flushed_library_is_loaded_again(own_server: Callable[..., RedisServer]) -> None:
    server = own_server()
    clock = FakeClock()
    broker = broker_for("flush", url=server.url, clock=clock)
    await broker.open()
    try:
        await publish_and_run(broker, clock, "a")
        await broker._client.function_flush()
        await broker._client.script_flush()
        await publish_and_run(broker, clock, "b")
        assert runner(broker).functions is True  # type: ignore[attr-defined]
        # And inside a pipeline (a publish spanning two queues).
        await broker._client.function_flush()
        await broker._client.script_flush()
        created = await broker.enqueue([job("p1", clock(), queue="q1"), job("p2", clock(), queue="q2")])
        assert created == [True, True]
    finally:
        await broker.close()


async def test_a_restart_without_persistence_loses_nothing_the_broker_needs(
    own_server: Callable[..., RedisServer],
) -> None:
    server = own_server()
    clock = FakeClock()
    broker = broker_for("restart", url=server.url, clock=clock)
    await broker.open()
    try:
        await publish_and_run(broker, clock, "a")
        server.kill()
        server.start()
        await publish_and_run(broker, clock, "b")  # the empty server gets the library again
        assert runner(broker).functions is True  # type: ignore[attr-defined]
    finally:
        await broker.close()


async def test_without_function_rights_commands_run_as_a_script(
    own_server: Callable[..., RedisServer],
) -> None:
    server = own_server()
    admin = Redis.from_url(server.url)
    await admin.execute_command("ACL", "SETUSER", "nofunc", "on", ">pw", "~*", "&*", "+@all", "-function")
    clock = FakeClock()
    url = server.url.replace("redis://", "redis://nofunc:pw@")
    broker = broker_for("acl", url=url, clock=clock)
    await broker.open()
    try:
        await publish_and_run(broker, clock, "a")
        assert runner(broker).functions is False  # type: ignore[attr-defined]
        assert await admin.function_list() == []
        await admin.script_flush()  # EVALSHA's NOSCRIPT path still reloads
        await publish_and_run(broker, clock, "b")
    finally:
        await broker.close()
        await admin.aclose()


async def test_source_headers_define_main_once() -> None:
    # Both forms are built from the file; it must define `main` and read ONLY, nothing else.
    assert "local function main(keys, argv)" in SOURCE
    assert "ONLY" in SOURCE


# --- bulk enqueue: slices of BULK jobs (2000 in asynctask.lua) -------------------------------


async def test_a_large_batch_reports_existing_and_duplicate_ids_in_order(prefix: str) -> None:
    clock = FakeClock()
    broker = broker_for(prefix, clock=clock)
    await broker.open()
    try:
        # Live jobs with ids in the second and third slices.
        assert await broker.enqueue([job("j2500", clock()), job("j4100", clock())]) == [True, True]
        batch = [job(f"j{i}", clock()) for i in range(4500)] + [job("j10", clock())]
        created = await broker.enqueue(batch)
        assert [b.id for b, c in zip(batch, created, strict=True) if not c] == ["j2500", "j4100", "j10"]
        claimed = await broker.claim("q", 5000, lease=30, worker="w")
        # FIFO among equal priority and run_at: the earlier publish first, then the batch in order.
        expected = ["j2500", "j4100"] + [b.id for b, c in zip(batch, created, strict=True) if c]
        assert [j.id for j in claimed] == expected
    finally:
        await broker.close()


async def every_command(broker: RedisBroker, clock: FakeClock) -> list[object]:
    """One pass through the broker's commands (hot and cold), as comparable values."""
    seen: list[object] = []
    now = clock()
    seen.append(await broker.enqueue([job(f"e{i}", now) for i in range(4)] + [job("later", now + 5)]))
    claimed = await broker.claim("q", 2, lease=1, worker="w")
    seen.append([j.id for j in claimed])
    seen.append(await broker.extend_leases([Lease(claimed[0].id, claimed[0].token)], lease=1))
    seen.append(await broker.save(claimed[0].id, claimed[0].token, state=b"s", result=None))
    ok = Outcome(job_id=claimed[0].id, token=claimed[0].token, kind=OutcomeKind.SUCCEEDED, expires_at=now + 1)
    seen.append(await broker.complete([ok]))
    seen.append([(j.id, j.status) for j in filter(None, [await broker.cancel("e2", expires_at=None)])])
    seen.append(
        [(j.id, j.status) for j in filter(None, [await broker.pause("e3"), await broker.resume("e3")])]
    )
    seen.append([(j.id, j.status) for j in filter(None, [await broker.retry("e2")])])
    seen.append((await broker.set_queue_paused("q", True)).paused)
    seen.append((await broker.set_queue_paused("q", False)).paused)
    clock.advance(10)
    seen.append((await broker.promote_due(10), await broker.rescue_expired(10), await broker.prune(10)))
    seen.append(sorted((s.queue, sorted(s.counts.items())) for s in await broker.queue_stats()))
    seen.append([j.id for j in await broker.list_jobs(queue="q")])
    info = WorkerInfo(id="w1", host="h", pid=1, queues=["q"], concurrency=1, version="x", started_at=now)
    await broker.record_worker(info, ttl=30)
    seen.append([w.id for w in await broker.list_workers()])
    await broker.remove_worker("w1")
    seen.append(await broker.delete("e3"))
    return seen


async def test_every_command_answers_alike_as_function_and_as_script(prefix: str) -> None:
    answers = []
    for functions, name in ((True, prefix), (False, prefix + "s")):
        clock = FakeClock()
        broker = broker_for(name, clock=clock)
        broker._scripts._run.functions = None if functions else False
        await broker.open()
        try:
            answers.append(await every_command(broker, clock))
            assert broker._scripts._run.functions is functions
        finally:
            if not functions:
                await delete_prefix(broker._client, broker)
            await broker.close()
    assert answers[0] == answers[1]
