"""The broker contract for workflows: the pending counter, atomic spawn, pause and resume."""

from __future__ import annotations

import pytest

from asynctask.brokers.base import Broker
from asynctask.models import JobStatus, Lease, LeaseState, Outcome, OutcomeKind
from asynctask.testing import FakeClock
from asynctask.testing.contract.suite.helpers import APPROX, LEASE, claim, finish, get, new


async def test_a_waiting_job_runs_when_its_children_finish(broker: Broker, clock: FakeClock) -> None:
    await broker.enqueue(
        [
            new(clock, "g", pending=2, meta=b'{"kind":"group"}'),
            new(clock, "g:0", parent_id="g"),
            new(clock, "g:1", parent_id="g"),
        ]
    )
    group = await get(broker, "g")
    assert group.status is JobStatus.WAITING and group.pending == 2 and group.meta == b'{"kind":"group"}'
    children = sorted(await claim(broker), key=lambda j: j.id)
    assert [j.id for j in children] == ["g:0", "g:1"], "a waiting job is not claimable"
    assert children[0].parent_id == "g"
    await finish(broker, children[0], result=b"1")
    assert (await get(broker, "g")).pending == 1
    assert (await get(broker, "g")).status is JobStatus.WAITING
    clock.advance(5)
    await finish(broker, children[1], OutcomeKind.FAILED, error="boom")
    released = await get(broker, "g")
    assert released.status is JobStatus.QUEUED and released.pending == 0 and released.attempts == 0
    assert released.run_at == pytest.approx(clock(), abs=1e-3)
    [again] = await claim(broker)
    assert again.id == "g"
    assert sorted(j.id for j in await broker.list_jobs(parent_id="g")) == ["g:0", "g:1"]


async def test_spawn_is_atomic_with_success(broker: Broker, clock: FakeClock) -> None:
    await broker.enqueue([new(clock, "p")])
    [parent] = await claim(broker)
    kids = tuple(new(clock, f"p:{i}", parent_id="p", task="child") for i in range(3))
    await finish(broker, parent, result=b'"spawned"', spawn=kids, meta=b'{"phase":"finish"}')
    waiting = await get(broker, "p")
    assert waiting.status is JobStatus.WAITING and waiting.pending == 3
    assert waiting.result == b'"spawned"' and waiting.meta == b'{"phase":"finish"}'
    assert waiting.lease_expires_at is None
    claimed = await claim(broker)
    assert sorted(j.id for j in claimed) == ["p:0", "p:1", "p:2"]
    for child in claimed:
        await finish(broker, child, result=b"0")
    [finisher] = await claim(broker)
    assert finisher.id == "p" and finisher.attempts == 1 and finisher.meta == b'{"phase":"finish"}'
    await finish(broker, finisher, result=b'"all done"', expires_at=clock() + 60)
    done = await get(broker, "p")
    assert done.status is JobStatus.SUCCEEDED and done.result == b'"all done"'


async def test_success_without_children_finishes(broker: Broker, clock: FakeClock) -> None:
    await broker.enqueue([new(clock, "p")])
    [parent] = await claim(broker)
    await finish(broker, parent, spawn=(new(clock, "other-root"),))  # spawned, but not its child
    assert (await get(broker, "p")).status is JobStatus.SUCCEEDED
    assert (await get(broker, "other-root")).status is JobStatus.QUEUED


async def test_a_stale_outcome_spawns_nothing(broker: Broker, clock: FakeClock) -> None:
    await broker.enqueue([new(clock, "p")])
    [parent] = await claim(broker)
    stale = Outcome(
        job_id="p",
        token=parent.token + 1,
        kind=OutcomeKind.SUCCEEDED,
        spawn=(new(clock, "p:0", parent_id="p"),),
    )
    assert await broker.complete([stale]) == [False]
    assert await broker.get("p:0") is None
    assert (await get(broker, "p")).pending == 0


async def test_spawning_an_existing_id_is_skipped_and_not_counted(broker: Broker, clock: FakeClock) -> None:
    await broker.enqueue([new(clock, "p"), new(clock, "p:0", payload=b'"original"')])
    parent = next(j for j in await claim(broker) if j.id == "p")
    await finish(broker, parent, spawn=(new(clock, "p:0", parent_id="p"), new(clock, "p:1", parent_id="p")))
    assert (await get(broker, "p")).pending == 1
    assert (await get(broker, "p:0")).payload == b'"original"'


async def test_a_chain_link_hands_its_place_to_the_next(broker: Broker, clock: FakeClock) -> None:
    await broker.enqueue([new(clock, "c", pending=1), new(clock, "c:0", parent_id="c")])
    [link0] = await claim(broker)
    await finish(broker, link0, result=b"1", spawn=(new(clock, "c:1", parent_id="c"),))
    chain = await get(broker, "c")
    assert chain.status is JobStatus.WAITING and chain.pending == 1
    [link1] = await claim(broker)
    assert link1.id == "c:1"
    await finish(broker, link1, result=b"2")
    assert (await get(broker, "c")).status is JobStatus.QUEUED


async def test_rescue_failure_and_cancel_count_as_finished_children(broker: Broker, clock: FakeClock) -> None:
    await broker.enqueue(
        [
            new(clock, "g", pending=3),
            new(clock, "g:lost", parent_id="g", max_retries=0),
            new(clock, "g:cancelled", parent_id="g", run_at=clock() + 100),
            new(clock, "g:ok", parent_id="g", run_at=clock() + 200),
        ]
    )
    [lost] = await claim(broker)
    clock.advance(LEASE + 1)
    assert await broker.rescue_expired(10) == 1
    assert (await get(broker, "g")).pending == 2
    await broker.cancel("g:cancelled", expires_at=None)
    assert (await get(broker, "g")).pending == 1
    clock.advance(300)
    [ok] = await claim(broker)
    await finish(broker, ok)
    assert (await get(broker, "g")).status is JobStatus.QUEUED
    assert lost.id == "g:lost"


async def test_retrying_a_failed_child_makes_the_parent_wait_for_it_again(
    broker: Broker, clock: FakeClock
) -> None:
    await broker.enqueue(
        [new(clock, "g", pending=2), new(clock, "g:a", parent_id="g"), new(clock, "g:b", parent_id="g")]
    )
    a, b = sorted(await claim(broker), key=lambda j: j.id)
    await finish(broker, a, OutcomeKind.FAILED, error="boom")
    assert (await get(broker, "g")).pending == 1
    await broker.retry("g:a")
    assert (await get(broker, "g")).pending == 2
    await finish(broker, b)
    assert (await get(broker, "g")).status is JobStatus.WAITING
    [a2] = await claim(broker)
    await finish(broker, a2)
    assert (await get(broker, "g")).status is JobStatus.QUEUED


async def test_cancelling_a_waiting_parent(broker: Broker, clock: FakeClock) -> None:
    await broker.enqueue([new(clock, "g", pending=1), new(clock, "g:0", parent_id="g")])
    cancelled = await broker.cancel("g", expires_at=None)
    assert cancelled is not None and cancelled.status is JobStatus.CANCELLED
    [child] = await claim(broker)
    await finish(broker, child)
    assert (await get(broker, "g")).status is JobStatus.CANCELLED, "a finished parent is not revived"


async def test_pause_and_resume_a_queued_job(broker: Broker, clock: FakeClock) -> None:
    await broker.enqueue([new(clock, "a")])
    paused = await broker.pause("a")
    assert paused is not None and paused.status is JobStatus.PAUSED
    assert await claim(broker) == []
    resumed = await broker.resume("a")
    assert resumed is not None and resumed.status is JobStatus.QUEUED
    assert [j.id for j in await claim(broker)] == ["a"]
    assert await broker.pause("missing") is None
    assert await broker.resume("missing") is None


async def test_resume_keeps_a_delayed_job_waiting_for_its_time(broker: Broker, clock: FakeClock) -> None:
    await broker.enqueue([new(clock, "later", run_at=clock() + 3600)])
    assert (await broker.pause("later")) is not None
    resumed = await broker.resume("later")
    assert resumed is not None and resumed.status is JobStatus.SCHEDULED
    assert resumed.run_at == pytest.approx(clock() + 3600, abs=APPROX)
    assert await claim(broker) == [], "not run at once"
    clock.advance(3601)
    assert [j.id for j in await claim(broker)] == ["later"]


async def test_pause_a_running_job_after_its_step(broker: Broker, clock: FakeClock) -> None:
    await broker.enqueue([new(clock, "a")])
    [job] = await claim(broker)
    requested = await broker.pause("a")
    assert requested is not None and requested.status is JobStatus.RUNNING and requested.pause_requested
    assert await broker.extend_leases([Lease("a", job.token)], lease=LEASE) == [LeaseState.PAUSE]
    assert await broker.save("a", job.token, state=b'{"step":3}') is True
    await finish(broker, job, OutcomeKind.PAUSE)
    parked = await get(broker, "a")
    assert parked.status is JobStatus.PAUSED and parked.attempts == 0 and not parked.pause_requested
    assert parked.state == b'{"step":3}'
    assert await claim(broker) == []
    assert (await broker.resume("a")) is not None
    [again] = await claim(broker)
    assert again.state == b'{"step":3}' and again.attempts == 1
    assert await broker.extend_leases([Lease("a", again.token)], lease=LEASE) == [LeaseState.OK]
    # resume leaves other statuses alone
    running = await broker.resume("a")
    assert running is not None and running.status is JobStatus.RUNNING
