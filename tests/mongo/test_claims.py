"""Claims on MongoDB: each job to one claimer only, in batches of a few round trips."""

from __future__ import annotations

from collections import Counter
from typing import Any

import anyio
import pytest
from pymongo import AsyncMongoClient, monitoring

from asynctask.brokers.mongo import MongoBroker
from asynctask.models import Lease, OutcomeKind
from asynctask.testing import FakeClock
from tests.backend_mongo import DATABASE
from tests.mongo import server
from tests.mongo.helpers import job, outcome

pytestmark = pytest.mark.anyio


@pytest.mark.slow  # ~30 s on the mongoeco test server (a Python server, ~8 ms per job updated)
async def test_twenty_claimers_claim_each_of_1000_jobs_exactly_once(
    notx: MongoBroker, clock: FakeClock
) -> None:
    broker = notx  # claims are the same with and without transactions
    now = clock()
    jobs = [job(f"j{i:04d}", now, priority=i % 3) for i in range(1000)]
    assert await broker.enqueue(jobs) == [True] * 1000
    claims: Counter[str] = Counter()

    async def claimer(n: int) -> None:
        # Each claimer has its own client, so its own connections, as separate workers would.
        own = MongoBroker(server.url(), database=DATABASE, prefix=broker.prefix, clock=clock)
        await own.open()
        try:
            while batch := await own.claim("q", 25, lease=60, worker=f"w{n}"):
                claims.update(j.id for j in batch)
        finally:
            await own.close()

    with anyio.fail_after(120):
        async with anyio.create_task_group() as tg:
            for n in range(20):
                tg.start_soon(claimer, n)
    assert len(claims) == 1000
    assert set(claims.values()) == {1}, [i for i, n in claims.items() if n > 1][:10]
    assert all(j.attempts == 1 for j in await broker.list_jobs(limit=1000))


class Commands(monitoring.CommandListener):
    """The names of the commands a client sends."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def started(self, event: Any) -> None:
        self.names.append(event.command_name)

    def succeeded(self, event: Any) -> None:
        pass

    def failed(self, event: Any) -> None:
        pass


async def test_a_batch_costs_the_same_round_trips_as_one_job(clock: FakeClock) -> None:
    from tests.backend_mongo import drop_prefix, fresh_prefix

    listener = Commands()
    client: AsyncMongoClient[Any] = AsyncMongoClient(server.url(), event_listeners=[listener])
    prefix = fresh_prefix()
    broker = MongoBroker(client=client, database=DATABASE, prefix=prefix, clock=clock)
    try:
        await broker.open()
        assert await broker.enqueue([job(f"j{i}", clock()) for i in range(50)]) == [True] * 50
        listener.names.clear()
        claimed = await broker.claim("q", 50, lease=30, worker="w")
        assert len(claimed) == 50
        # The look is an aggregation: it reads the queue's flow settings in the same round trip.
        assert listener.names == ["aggregate", "update", "find"], "look, take, read: whatever the batch size"
        listener.names.clear()
        clock.advance(1)
        leases = [Lease(j.id, j.token) for j in claimed]
        assert len(await broker.extend_leases(leases, lease=30)) == 50
        assert listener.names == ["update", "find"]
        listener.names.clear()
        done = await broker.complete([outcome(j, OutcomeKind.SUCCEEDED, result=b"1") for j in claimed])
        assert done == [True] * 50
        assert listener.names == ["update"], "jobs without a parent complete in one bulk write"
        await broker.close()
        assert await client[DATABASE][f"{prefix}.jobs"].count_documents({"status": "succeeded"}) == 50
    finally:
        await drop_prefix(prefix)
        await client.close()


async def test_claim_order_after_promotion_keeps_the_scheduled_order(
    broker: MongoBroker, clock: FakeClock
) -> None:
    t = clock()
    await broker.enqueue(
        [job("late-b", t, run_at=t + 10), job("late-a", t, run_at=t + 10), job("now", t, run_at=t)]
    )
    clock.advance(20)
    await broker.enqueue([job("fresh", clock(), run_at=t + 10)])  # same run_at, queued last
    order = [j.id for j in await broker.claim("q", 1, lease=30, worker="w")]
    order += [j.id for j in await broker.claim("q", 10, lease=30, worker="w")]
    # run_at first; at equal run_at the job queued before the promotion, then the promoted ones
    # in the order they were scheduled.
    assert order == ["now", "fresh", "late-b", "late-a"]


async def test_claimers_racing_on_one_broker_split_the_jobs(broker: MongoBroker, clock: FakeClock) -> None:
    await broker.enqueue([job(f"j{i}", clock()) for i in range(30)])
    results = await _claim_all_at_once(broker, clock, claimers=6, limit=30)
    claimed = [i for batch in results for i in batch]
    assert sorted(claimed) == sorted(f"j{i}" for i in range(30)), "each job once, none left behind"


async def _claim_all_at_once(
    broker: MongoBroker, clock: FakeClock, *, claimers: int, limit: int
) -> list[list[str]]:
    results: list[list[str]] = []

    async def one() -> None:
        batch = await broker.claim("q", limit, lease=30, worker="w")
        results.append([j.id for j in batch])

    async with anyio.create_task_group() as tg:
        for _ in range(claimers):
            tg.start_soon(one)
    return results
