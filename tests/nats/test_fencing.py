"""Compare-and-set fencing on the NATS broker, with several brokers racing on one bucket.

Each broker has its own connection and its own index, as separate worker processes would, so
every race here is decided by the server's revision checks, not by shared memory.
"""

from __future__ import annotations

from collections import Counter

import anyio
import pytest

from asynctask.brokers.nats import NatsBroker
from asynctask.brokers.nats.client import Conflict
from asynctask.brokers.nats.store import Write
from asynctask.models import JobStatus, Lease, LeaseState, NewJob, Outcome, OutcomeKind
from asynctask.testing import FakeClock, wait_until
from tests.nats.conftest import BrokerMaker

pytestmark = pytest.mark.anyio

LEASE = 30.0


def new(clock: FakeClock, job_id: str, **kw: object) -> NewJob:
    fields: dict[str, object] = {"id": job_id, "task": "t", "queue": "q", "payload": b"{}", "run_at": clock()}
    fields.update(kw)
    return NewJob(**fields)  # type: ignore[arg-type]


async def test_a_write_at_a_stale_revision_changes_nothing(brokers: BrokerMaker, clock: FakeClock) -> None:
    async with brokers(clock) as broker:
        await broker.enqueue([new(clock, "a"), new(clock, "b")])
        a, b = (await broker.store.read("a")), (await broker.store.read("b"))
        assert a.job is not None and b.job is not None
        [moved] = await broker.store.write([Write("a", a.job, a.revision)])
        assert moved > a.revision
        with pytest.raises(Conflict):
            await broker.store.write([Write("a", a.job, a.revision)])
        # A batch with one stale write stores none of its writes.
        with pytest.raises(Conflict):
            await broker.store.write([Write("b", b.job, b.revision), Write("a", a.job, a.revision)])
        assert (await broker.store.read("b")).revision == b.revision, "the batch was all or nothing"
        assert (await broker.store.read("a")).revision == moved


async def test_two_brokers_racing_claim_each_job_once(brokers: BrokerMaker, clock: FakeClock) -> None:
    async with brokers(clock) as one, brokers(clock) as two:
        await one.enqueue([new(clock, f"j{i:03d}") for i in range(400)])
        taken: dict[str, list[str]] = {"one": [], "two": []}

        async def drain(name: str, broker: NatsBroker) -> None:
            while True:
                batch = await broker.claim("q", 17, lease=LEASE, worker=name)
                taken[name] += [j.id for j in batch]
                if sum(len(v) for v in taken.values()) >= 400:
                    return
                if not batch:
                    await broker.wait_for_jobs("q", 0.05)

        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                tg.start_soon(drain, "one", one)
                tg.start_soon(drain, "two", two)
        both = taken["one"] + taken["two"]
        assert len(both) == 400 and set(both) == {f"j{i:03d}" for i in range(400)}, "each job claimed once"
        jobs = await one.list_jobs(status=JobStatus.RUNNING, limit=1000)
        assert {j.token for j in jobs} == {1} and len(jobs) == 400


async def test_a_zombie_in_another_process_cannot_overwrite_the_owner(
    brokers: BrokerMaker, clock: FakeClock
) -> None:
    async with brokers(clock) as zombie_side, brokers(clock) as owner_side:
        await zombie_side.enqueue([new(clock, "a", max_retries=3)])
        [zombie] = await zombie_side.claim("q", 1, lease=LEASE, worker="zombie")
        clock.advance(LEASE + 1)
        assert await owner_side.rescue_expired(10) == 1
        await wait_until(lambda: owner_side.claim("q", 1, lease=LEASE, worker="owner"), timeout=5)
        owner = await owner_side.get("a")
        assert owner is not None and owner.status is JobStatus.RUNNING and owner.token == zombie.token + 1
        # The zombie's index may still show its own claim: the server's check refuses it anyway.
        stale = Outcome(job_id="a", token=zombie.token, kind=OutcomeKind.SUCCEEDED, result=b'"zombie"')
        assert await zombie_side.complete([stale]) == [False]
        assert await zombie_side.save("a", zombie.token, state=b"1") is False
        assert await zombie_side.extend_leases([Lease("a", zombie.token)], lease=LEASE) == [LeaseState.LOST]
        done = Outcome(job_id="a", token=owner.token, kind=OutcomeKind.SUCCEEDED, result=b'"owner"')
        assert await owner_side.complete([done]) == [True]
        final = await zombie_side.get("a")
        assert final is not None and final.result == b'"owner"' and final.state is None


async def test_children_finishing_in_two_processes_release_the_parent_once(
    brokers: BrokerMaker, clock: FakeClock
) -> None:
    async with brokers(clock) as one, brokers(clock) as two:
        kids = [new(clock, f"g:{i}", parent_id="g") for i in range(120)]
        await one.enqueue([new(clock, "g", pending=len(kids)), *kids])

        parent_claims: list[str] = []

        async def finish_some(broker: NatsBroker, name: str) -> None:
            while batch := await broker.claim("q", 10, lease=LEASE, worker=name):
                parent_claims.extend(name for j in batch if j.id == "g")
                outcomes = [Outcome(job_id=j.id, token=j.token, kind=OutcomeKind.SUCCEEDED) for j in batch]
                assert await broker.complete(outcomes) == [True] * len(batch)

        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                tg.start_soon(finish_some, one, "one")
                tg.start_soon(finish_some, two, "two")
        parent = await two.get("g")
        # Released once its 120th child finished, whichever process finished it; claimed once.
        assert parent is not None and parent.pending == 0 and parent.status is JobStatus.SUCCEEDED
        assert len(parent_claims) == 1
        statuses = Counter(j.status for j in await one.list_jobs(parent_id="g", limit=1000))
        assert statuses == {JobStatus.SUCCEEDED: 120}


async def test_an_outcome_spawning_many_children_is_not_starved_by_its_heartbeat(
    brokers: BrokerMaker, clock: FakeClock
) -> None:
    """The outcome's transaction reads its 300 children before writing under the job's revision;
    the worker's heartbeat, extending the same job's lease meanwhile, must not move that revision
    on every attempt (it did: the outcome then timed out and the job failed)."""
    async with brokers(clock) as broker:
        await broker.enqueue([new(clock, "root")])
        [root] = await broker.claim("q", 1, lease=LEASE, worker="w")
        children = tuple(new(clock, f"c{i:03d}", parent_id="root", queue="kids") for i in range(300))
        outcome = Outcome(job_id="root", token=root.token, kind=OutcomeKind.SUCCEEDED, spawn=children)
        beats = 0

        async def heartbeat() -> None:
            nonlocal beats
            while True:
                # LOST once the outcome applied (a beat already in flight then finds the job waiting).
                await broker.extend_leases([Lease("root", root.token)], lease=LEASE)
                beats += 1
                await anyio.sleep(0.001)

        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                tg.start_soon(heartbeat)
                await wait_until(lambda: beats > 0)
                assert await broker.complete([outcome]) == [True]
                tg.cancel_scope.cancel()
        stored = await broker.get("root")
        assert stored is not None and stored.status is JobStatus.WAITING and stored.pending == 300
