"""Flow control on MongoDB, beyond the contract: separate claimers never exceed a limit, the lock
documents that serialise them, the cost of an unlimited claim, stale unique keys."""

from __future__ import annotations

import time
from functools import partial
from typing import Any

import anyio
import pytest
from pymongo import AsyncMongoClient

from asynctask.brokers.mongo import MongoBroker
from asynctask.brokers.mongo.flow import locks_collection
from asynctask.flow import Claimed, RateLimit, TaskLimit
from asynctask.models import JobStatus, OutcomeKind
from asynctask.testing import FakeClock
from tests.backend_mongo import DATABASE, drop_prefix, fresh_prefix, mongo_broker
from tests.mongo import server
from tests.mongo.helpers import job, outcome
from tests.mongo.test_claims import Commands

pytestmark = pytest.mark.anyio

LIMITS = {"t": TaskLimit(concurrency=2)}


async def test_separate_claimers_never_exceed_a_concurrency_limit(
    broker: MongoBroker, clock: FakeClock
) -> None:
    await broker.enqueue([job(f"j{i:02d}", clock()) for i in range(30)])
    await broker.set_queue_limits("q", concurrency=3, rate=None)
    others = [
        MongoBroker(server.url(), database=DATABASE, prefix=broker.prefix, clock=clock, transactions=tx)
        for tx in (False, False, False, False, False, None)
    ]
    running: set[str] = set()
    finished = 0

    async def claimer(own: MongoBroker, n: int) -> None:
        nonlocal finished
        await own.open()
        try:
            while finished < 30:
                limits = LIMITS if n % 2 else None  # the queue's limit binds claims without limits too
                jobs = await own.claim("q", 2, lease=60, worker=f"w{n}", limits=limits)
                running.update(j.id for j in jobs)
                assert len(running) <= 3, f"{sorted(running)} running at once"
                await anyio.sleep(0.001)
                for held in jobs:
                    running.discard(held.id)
                    assert await own.complete([outcome(held)]) == [True]
                    finished += 1
                if not jobs:
                    await anyio.sleep(0.005)
        finally:
            await own.close()

    with anyio.fail_after(120):
        async with anyio.create_task_group() as tg:
            for n, own in enumerate(others):
                tg.start_soon(claimer, own, n)
    assert len(await broker.list_jobs(status=JobStatus.SUCCEEDED, limit=100)) == 30


async def test_a_shared_bucket_is_spent_once_by_racing_claimers(
    broker: MongoBroker, clock: FakeClock
) -> None:
    await broker.enqueue([job(f"j{i:02d}", clock()) for i in range(20)])
    limits = {"t": TaskLimit(rate=RateLimit(5, per=1.0, burst=5))}
    others = [
        MongoBroker(server.url(), database=DATABASE, prefix=broker.prefix, clock=clock) for _ in range(4)
    ]
    got: list[int] = []

    async def claimer(own: MongoBroker) -> None:
        await own.open()
        try:
            for _ in range(3):
                got.append(len(await own.claim("q", 3, lease=60, worker="w", limits=limits)))
        finally:
            await own.close()

    async with anyio.create_task_group() as tg:
        for own in others:
            tg.start_soon(claimer, own)
    assert sum(got) == 5, "a full bucket of five tokens, on a paused clock: five jobs in all"


async def test_a_lock_left_by_a_dead_claimer_expires(broker: MongoBroker, clock: FakeClock) -> None:
    await broker.enqueue([job("a", clock())])
    locks = broker.client[DATABASE][locks_collection(broker.prefix)]
    from datetime import UTC, datetime, timedelta

    ahead = datetime.now(UTC) + timedelta(seconds=60)
    await locks.insert_one({"_id": "task:t", "lock": "someone", "until": ahead})
    with anyio.move_on_after(0.3) as waited:
        await broker.claim("q", 1, lease=60, worker="w", limits=LIMITS)
    assert waited.cancelled_caught, "the claim waits while another claimer holds the lock"
    assert (await locks.find_one({"_id": "task:t"}))["lock"] == "someone", "a cancelled wait takes nothing"
    await locks.update_one({"_id": "task:t"}, {"$set": {"until": datetime.now(UTC) - timedelta(seconds=1)}})
    with anyio.fail_after(10):
        [claimed] = await broker.claim("q", 1, lease=60, worker="w", limits=LIMITS)
    assert claimed.id == "a"
    assert "lock" not in (await locks.find_one({"_id": "task:t"})), "released after the claim"


async def test_an_unlimited_claim_costs_its_three_round_trips(clock: FakeClock) -> None:
    listener = Commands()
    client: AsyncMongoClient[Any] = AsyncMongoClient(server.url(), event_listeners=[listener])
    prefix = fresh_prefix()
    broker = MongoBroker(client=client, database=DATABASE, prefix=prefix, clock=clock)
    try:
        await broker.open()
        await broker.enqueue([job(f"j{i}", clock()) for i in range(4)])
        listener.names.clear()
        other = {"u": TaskLimit(concurrency=1)}  # limits of a task with no job at the head
        assert len(await broker.claim("q", 2, lease=30, worker="w", limits=other)) == 2
        assert listener.names == ["aggregate", "update", "find"]
        await broker.set_queue_limits("q", concurrency=3, rate=None)
        listener.names.clear()
        claimed = await broker.claim("q", 2, lease=30, worker="w")
        assert len(claimed) == 1 and isinstance(claimed, Claimed) and claimed.held_back
        assert listener.names[0] == "aggregate", "the same look diverts to the flow path"
        await broker.set_queue_limits("q", concurrency=None, rate=None)
        assert await broker.configured_queues() == {}
        listener.names.clear()
        assert len(await broker.claim("q", 2, lease=30, worker="w")) == 1
        assert listener.names == ["aggregate", "update", "find"], "back to the defaults: the plain path"
        await broker.close()
    finally:
        await drop_prefix(prefix)
        await client.close()


async def test_a_stale_unique_key_on_a_finished_job_is_freed(broker: MongoBroker, clock: FakeClock) -> None:
    await broker.enqueue([job("a", clock(), unique_key="k")])
    [held] = await broker.claim("q", 1, lease=60, worker="w")
    await broker.complete([outcome(held, OutcomeKind.FAILED, error="x", expires_at=clock() + 60)])
    # A retry interrupted after writing the key back leaves it on the finished job.
    await broker.collection.update_one({"_id": "a"}, {"$set": {"ukey": "k"}})
    assert await broker.find_unique("k") is None, "a finished job holds no key"
    assert await broker.enqueue([job("b", clock(), unique_key="k")]) == [True]
    assert (await broker.find_unique("k")).id == "b"  # type: ignore[union-attr]
    assert await broker.enqueue([job("c", clock(), unique_key="k")]) == [False]


async def test_a_held_wait_sees_another_process_resume_the_queue(clock: FakeClock) -> None:
    async with mongo_broker(clock, change_streams=False, poll_interval=0.05) as broker:
        await broker.enqueue([job("a", clock())])
        await broker.set_queue_paused("q", True)
        other = MongoBroker(server.url(), database=DATABASE, prefix=broker.prefix, clock=clock)
        await other.open()
        try:
            started = time.monotonic()
            with anyio.fail_after(20):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(partial(broker.wait_for_jobs, "q", 30.0, held=True))
                    await anyio.sleep(0.2)
                    await other.set_queue_paused("q", False)
            assert time.monotonic() - started < 5, "woken by the settings change, not the timeout"
        finally:
            await other.close()


async def test_a_key_goes_to_the_first_job_of_a_batch_that_is_created(
    broker: MongoBroker, clock: FakeClock
) -> None:
    await broker.enqueue([job("a", clock())])
    batch = [
        job("a", clock(), unique_key="k"),
        job("b", clock(), unique_key="k"),
        job("c", clock(), unique_key="k"),
    ]
    assert await broker.enqueue(batch) == [False, True, False], "a exists: b is the first to take the key"
    assert (await broker.find_unique("k")).id == "b"  # type: ignore[union-attr]
