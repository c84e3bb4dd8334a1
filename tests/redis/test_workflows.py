"""Workflow and pause semantics, run on the Redis broker and the in-memory reference side by side.

The contract suite covers the core protocol; these pin down the parent/child counter, spawn and
pause so the Redis scripts match :class:`~asynctask.brokers.memory.MemoryBroker` exactly,
including links across queues.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from asynctask.brokers import Broker
from asynctask.models import Job, JobStatus, Lease, LeaseState, NewJob, Outcome, OutcomeKind
from asynctask.testing import FakeClock
from tests import backends

pytestmark = pytest.mark.anyio

LEASE = 30.0


@pytest.fixture(params=["memory", "redis"])
async def wf(request: pytest.FixtureRequest, clock: FakeClock) -> AsyncIterator[Broker]:
    async with backends.FACTORIES[request.param](clock) as broker:
        yield broker


def new(clock: FakeClock, job_id: str, **kw: object) -> NewJob:
    fields: dict[str, object] = {"id": job_id, "task": "t", "queue": "q", "payload": b"{}", "run_at": clock()}
    fields.update(kw)
    return NewJob(**fields)  # type: ignore[arg-type]


async def get(broker: Broker, job_id: str) -> Job:
    job = await broker.get(job_id)
    assert job is not None
    return job


def done(job: Job, kind: OutcomeKind = OutcomeKind.SUCCEEDED, **kw: object) -> Outcome:
    return Outcome(job_id=job.id, token=job.token, kind=kind, **kw)  # type: ignore[arg-type]


async def test_spawned_children_hold_the_parent_until_they_finish(wf: Broker, clock: FakeClock) -> None:
    await wf.enqueue([new(clock, "p")])
    [p] = await wf.claim("q", 1, lease=LEASE, worker="w")
    kids = (new(clock, "c1", parent_id="p"), new(clock, "c2", parent_id="p", queue="other"))
    assert await wf.complete([done(p, result=b"r", meta=b"m1", spawn=kids)]) == [True]
    parent = await get(wf, "p")
    assert (parent.status, parent.pending, parent.meta, parent.result) == (JobStatus.WAITING, 2, b"m1", b"r")
    # Same created_at in two queues: the order between them is not specified on Redis.
    assert sorted(j.id for j in await wf.list_jobs(parent_id="p")) == ["c1", "c2"]
    [c1] = await wf.claim("q", 5, lease=LEASE, worker="w")
    [c2] = await wf.claim("other", 5, lease=LEASE, worker="w")
    await wf.complete([done(c1)])
    assert (await get(wf, "p")).pending == 1
    clock.advance(5)
    await wf.complete([done(c2, OutcomeKind.FAILED, error="x")])
    parent = await get(wf, "p")
    assert (parent.status, parent.pending, parent.attempts) == (JobStatus.QUEUED, 0, 0)
    assert parent.run_at == pytest.approx(clock())
    [again] = await wf.claim("q", 5, lease=LEASE, worker="w")
    assert again.id == "p" and again.attempts == 1


async def test_a_stale_outcome_spawns_nothing(wf: Broker, clock: FakeClock) -> None:
    await wf.enqueue([new(clock, "p")])
    [p] = await wf.claim("q", 1, lease=LEASE, worker="w")
    stale = Outcome(
        job_id="p", token=p.token + 1, kind=OutcomeKind.SUCCEEDED, spawn=(new(clock, "c", parent_id="p"),)
    )
    assert await wf.complete([stale]) == [False]
    assert await wf.get("c") is None


async def test_group_parent_waits_for_enqueued_members(wf: Broker, clock: FakeClock) -> None:
    await wf.enqueue(
        [new(clock, "g", pending=2), new(clock, "m1", parent_id="g"), new(clock, "m2", parent_id="g")]
    )
    assert (await get(wf, "g")).status is JobStatus.WAITING
    members = await wf.claim("q", 5, lease=LEASE, worker="w")
    assert sorted(j.id for j in members) == ["m1", "m2"]
    await wf.complete([done(members[0])])
    assert await wf.cancel("g", expires_at=None) is not None  # a waiting job can be cancelled
    assert (await get(wf, "g")).status is JobStatus.CANCELLED


async def test_cancel_and_retry_of_children_move_the_counter(wf: Broker, clock: FakeClock) -> None:
    await wf.enqueue(
        [new(clock, "g", pending=2), new(clock, "a", parent_id="g"), new(clock, "b", parent_id="g")]
    )
    await wf.cancel("a", expires_at=None)
    assert (await get(wf, "g")).pending == 1
    await wf.retry("a")
    assert (await get(wf, "g")).pending == 2
    for job in await wf.claim("q", 5, lease=LEASE, worker="w"):
        await wf.complete([done(job)])
    assert (await get(wf, "g")).status is JobStatus.QUEUED


async def test_rescue_that_fails_a_child_counts_it_out(wf: Broker, clock: FakeClock) -> None:
    await wf.enqueue([new(clock, "g", pending=1), new(clock, "a", parent_id="g", queue="q2")])
    await wf.claim("q2", 1, lease=LEASE, worker="w")
    clock.advance(LEASE + 1)
    assert await wf.rescue_expired(10) == 1
    assert (await get(wf, "a")).status is JobStatus.FAILED
    assert (await get(wf, "g")).status is JobStatus.QUEUED


async def test_pause_and_resume(wf: Broker, clock: FakeClock) -> None:
    await wf.enqueue([new(clock, "a"), new(clock, "b")])
    paused = await wf.pause("a")
    assert paused is not None and paused.status is JobStatus.PAUSED
    [b] = await wf.claim("q", 5, lease=LEASE, worker="w")
    assert b.id == "b"
    requested = await wf.pause("b")
    assert requested is not None and requested.pause_requested and requested.status is JobStatus.RUNNING
    assert await wf.extend_leases([Lease("b", b.token)], lease=LEASE) == [LeaseState.PAUSE]
    assert await wf.complete([done(b, OutcomeKind.PAUSE)]) == [True]
    parked = await get(wf, "b")
    assert (parked.status, parked.attempts, parked.pause_requested) == (JobStatus.PAUSED, 0, False)
    assert await wf.claim("q", 5, lease=LEASE, worker="w") == []
    clock.advance(3)
    resumed = await wf.resume("b")
    assert resumed is not None and resumed.status is JobStatus.QUEUED
    assert resumed.run_at == pytest.approx(clock())
    await wf.resume("a")
    assert [j.id for j in await wf.claim("q", 5, lease=LEASE, worker="w")] == ["b", "a"]
    assert await wf.pause("missing") is None
