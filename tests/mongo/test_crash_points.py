"""The non-transactional workflow path, interrupted between each of its steps.

A failure is injected at each step boundary (``spawned``, ``committed``, ``released``,
``counted``; see ``asynctask/brokers/mongo/workflows.py``), as if the worker died there. Another
broker (another worker) then recovers with ``rescue_expired`` alone, and nothing is lost,
nothing appears early, and no count applies twice.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from asynctask.brokers.mongo import MongoBroker
from asynctask.brokers.mongo.journal import flush
from asynctask.models import JobStatus, OutcomeKind
from asynctask.testing import FakeClock
from tests.backend_mongo import DATABASE
from tests.mongo import server
from tests.mongo.helpers import job, outcome

pytestmark = pytest.mark.anyio

LEASE = 120.0  # longer than repair_after: only the jobs a test expires are rescued


class Crash(Exception):
    """The worker dies here."""


def crash_at(step: str) -> Callable[[str], Awaitable[None]]:
    async def hook(name: str) -> None:
        if name == step:
            raise Crash(step)

    return hook


@pytest.fixture
async def other(notx: MongoBroker, clock: FakeClock) -> AsyncIterator[MongoBroker]:
    """A second worker's broker on the same collections, which survives the crash."""
    broker = MongoBroker(server.url(), database=DATABASE, prefix=notx.prefix, clock=clock, transactions=False)
    await broker.open()
    try:
        yield broker
    finally:
        await broker.close()


async def status(broker: MongoBroker, job_id: str) -> tuple[JobStatus, int] | None:
    found = await broker.get(job_id)
    return None if found is None else (found.status, found.pending)


async def test_crash_after_spawning_shows_nothing_and_the_rerun_spawns_once(
    notx: MongoBroker, other: MongoBroker, clock: FakeClock
) -> None:
    await notx.enqueue([job("p", clock(), max_retries=2)])
    [parent] = await notx.claim("q", 1, lease=LEASE, worker="doomed")
    kids = (job("p:0", clock(), parent_id="p"), job("p:1", clock(), parent_id="p"))
    notx._wf.step = crash_at("spawned")
    with pytest.raises(Crash):
        await notx.complete([outcome(parent, result=b"1", spawn=kids)])
    assert await other.get("p:0") is None, "a dormant child is invisible"
    assert [j.id for j in await other.list_jobs()] == ["p"]
    assert await other.claim("q", 10, lease=LEASE, worker="w") == []
    assert await status(other, "p") == (JobStatus.RUNNING, 0)
    clock.advance(LEASE + 1)
    assert await other.rescue_expired(10) == 1
    [again] = await other.claim("q", 10, lease=LEASE, worker="w")
    assert again.id == "p" and again.attempts == 2
    assert await other.complete([outcome(again, result=b"1", spawn=kids)]) == [True]
    assert await status(other, "p") == (JobStatus.WAITING, 2), "the dormant children were taken over"
    children = await other.claim("q", 10, lease=LEASE, worker="w")
    assert sorted(j.id for j in children) == ["p:0", "p:1"]
    assert await other.complete([outcome(c) for c in children]) == [True, True]
    finisher = await other.get("p")
    assert finisher is not None and finisher.status is JobStatus.QUEUED and finisher.attempts == 0


async def test_dormant_children_of_an_attempt_that_never_committed_are_swept(
    notx: MongoBroker, other: MongoBroker, clock: FakeClock
) -> None:
    await notx.enqueue([job("p", clock(), max_retries=2)])
    [parent] = await notx.claim("q", 1, lease=LEASE, worker="doomed")
    notx._wf.step = crash_at("spawned")
    with pytest.raises(Crash):
        await notx.complete([outcome(parent, spawn=(job("p:0", clock(), parent_id="p"),))])
    assert await other.collection.count_documents({"_id": "p:0"}) == 1
    clock.advance(LEASE + 1)
    await other.rescue_expired(10)
    [again] = await other.claim("q", 1, lease=LEASE, worker="w")
    # This attempt is still running with another token: the old attempt's child is garbage.
    await other.rescue_expired(10)
    assert await other.collection.count_documents({"_id": "p:0"}) == 0
    assert await other.complete([outcome(again, OutcomeKind.FAILED, error="gave up")]) == [True]
    assert await other.get("p:0") is None


async def test_crash_after_the_commit_is_repaired_after_repair_after(
    notx: MongoBroker, other: MongoBroker, clock: FakeClock
) -> None:
    await notx.enqueue([job("p", clock())])
    [parent] = await notx.claim("q", 1, lease=LEASE, worker="doomed")
    kids = (job("p:0", clock(), parent_id="p"), job("p:1", clock(), parent_id="p"))
    notx._wf.step = crash_at("committed")
    with pytest.raises(Crash):
        await notx.complete([outcome(parent, result=b"1", spawn=kids)])
    assert await status(other, "p") == (JobStatus.WAITING, 2), "the outcome happened"
    assert await other.get("p:0") is None, "its children are not released yet"
    assert await other.rescue_expired(10) == 0
    assert await other.get("p:0") is None, "a journal younger than repair_after is left to its worker"
    clock.advance(other.repair_after + 1)
    await other.rescue_expired(10)
    assert await status(other, "p:0") == (JobStatus.QUEUED, 0)
    assert await status(other, "p") == (JobStatus.WAITING, 2), "counted once"
    raw = await other.collection.find_one({"_id": "p"})
    assert "journal" not in raw and "jat" not in raw


async def test_crash_between_releasing_children_and_counting_them(
    notx: MongoBroker, other: MongoBroker, clock: FakeClock
) -> None:
    await notx.enqueue([job("g", clock(), pending=1), job("g:0", clock(), parent_id="g"), job("a", clock())])
    [spawner] = [j for j in await notx.claim("q", 10, lease=LEASE, worker="doomed") if j.id == "a"]
    notx._wf.step = crash_at("released")
    with pytest.raises(Crash):
        await notx.complete([outcome(spawner, spawn=(job("g:x", clock(), parent_id="g"),))])
    assert await status(other, "g:x") == (JobStatus.QUEUED, 0), "released"
    assert await status(other, "g") == (JobStatus.WAITING, 1), "not counted in yet"
    clock.advance(other.repair_after + 1)
    await other.rescue_expired(10)
    await other.rescue_expired(10)
    assert await status(other, "g") == (JobStatus.WAITING, 2), "counted in once"


async def test_crash_after_counting_out_does_not_count_twice(
    notx: MongoBroker, other: MongoBroker, clock: FakeClock
) -> None:
    await notx.enqueue(
        [job("g", clock(), pending=2), job("g:0", clock(), parent_id="g"), job("g:1", clock(), parent_id="g")]
    )
    first, second = sorted(await notx.claim("q", 10, lease=LEASE, worker="doomed"), key=lambda j: j.id)
    notx._wf.step = crash_at("counted")
    with pytest.raises(Crash):
        await notx.complete([outcome(first, result=b"0")])
    assert await status(other, "g") == (JobStatus.WAITING, 1)
    raw = await other.collection.find_one({"_id": "g:0"})
    assert raw["journal"], "the entry is still there, as if the count had not happened"
    clock.advance(other.repair_after + 1)
    await other.rescue_expired(10)
    assert await status(other, "g") == (JobStatus.WAITING, 1), "the ledger refused the second count"
    # The second child's count-out (from the surviving broker) releases the group once.
    notx._wf.step = crash_at("never")
    assert await notx.complete([outcome(second, result=b"1")]) == [True]
    released = await other.get("g")
    assert released is not None and released.status is JobStatus.QUEUED and released.pending == 0


async def test_the_same_journal_applied_twice_counts_once(notx: MongoBroker, clock: FakeClock) -> None:
    await notx.enqueue(
        [job("g", clock(), pending=2), job("g:0", clock(), parent_id="g"), job("g:1", clock(), parent_id="g")]
    )
    notx._wf.step = crash_at("committed")
    with pytest.raises(Crash):
        await notx.cancel("g:0", expires_at=None)
    snapshot = await notx.collection.find_one({"_id": "g:0"})
    # Two workers repairing at once, from the same read of the journal.
    await flush(notx.collection, [snapshot], clock(), session=None, ledger=True)
    await flush(notx.collection, [snapshot], clock(), session=None, ledger=True)
    assert await status(notx, "g") == (JobStatus.WAITING, 1)


async def test_a_stale_spawning_outcome_leaves_no_dormant_children(
    notx: MongoBroker, clock: FakeClock
) -> None:
    await notx.enqueue([job("p", clock())])
    [parent] = await notx.claim("q", 1, lease=LEASE, worker="w")
    stale = outcome(parent, spawn=(job("p:0", clock(), parent_id="p"),))
    stale = type(stale)(job_id="p", token=parent.token + 1, kind=OutcomeKind.SUCCEEDED, spawn=stale.spawn)
    assert await notx.complete([stale]) == [False]
    assert await notx.collection.count_documents({"_id": "p:0"}) == 0
