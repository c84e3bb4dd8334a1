"""The broker contract, part 1: enqueue, claim order, completion. Every test talks to the broker protocol
directly, on a fake clock (River's driver suite is the model)."""

from __future__ import annotations

import pytest

from asynctask.brokers.base import Broker
from asynctask.models import JobStatus, Outcome, OutcomeKind
from asynctask.testing import FakeClock
from asynctask.testing.contract.suite.helpers import APPROX, LEASE, claim, get, new, outcome

# --- enqueue -----------------------------------------------------------------------------


async def test_enqueue_stores_a_queued_job(broker: Broker, clock: FakeClock) -> None:
    assert await broker.enqueue([new(clock, "a", priority=3, timeout=2.5)]) == [True]
    job = await get(broker, "a")
    assert job.status is JobStatus.QUEUED
    assert (job.task, job.queue, job.payload, job.priority, job.max_retries) == ("t", "q", b'{"n":1}', 3, 2)
    assert job.timeout == pytest.approx(2.5)
    assert job.attempts == 0
    assert job.created_at == pytest.approx(clock(), abs=APPROX)
    assert job.run_at == pytest.approx(clock(), abs=APPROX)
    assert job.started_at is None and job.finished_at is None and job.result is None
    assert not job.has_result


async def test_payload_bytes_round_trip_exactly(broker: Broker, clock: FakeClock) -> None:
    raw = bytes(range(256)) * 4
    await broker.enqueue([new(clock, "raw", payload=raw)])
    assert (await get(broker, "raw")).payload == raw
    [job] = await claim(broker)
    assert job.payload == raw


async def test_duplicate_job_id_is_enqueued_once(broker: Broker, clock: FakeClock) -> None:
    assert await broker.enqueue([new(clock, "dup")]) == [True]
    assert await broker.enqueue([new(clock, "dup", payload=b'"other"'), new(clock, "fresh")]) == [False, True]
    assert (await get(broker, "dup")).payload == b'{"n":1}'
    claimed = await claim(broker)
    assert sorted(j.id for j in claimed) == ["dup", "fresh"]
    # Still idempotent while running and after finishing.
    assert await broker.enqueue([new(clock, "dup")]) == [False]
    dup = next(j for j in claimed if j.id == "dup")
    assert await broker.complete([outcome(dup, OutcomeKind.SUCCEEDED, expires_at=clock() + 60)]) == [True]
    assert await broker.enqueue([new(clock, "dup")]) == [False]
    assert await claim(broker) == []


async def test_duplicate_ids_inside_one_batch(broker: Broker, clock: FakeClock) -> None:
    assert await broker.enqueue([new(clock, "x"), new(clock, "x")]) == [True, False]
    assert len(await claim(broker)) == 1


async def test_get_unknown_job_is_none(broker: Broker) -> None:
    assert await broker.get("nope") is None


# --- claiming ----------------------------------------------------------------------------


async def test_claim_leases_and_fences(broker: Broker, clock: FakeClock) -> None:
    await broker.enqueue([new(clock, "a")])
    [job] = await claim(broker)
    assert job.id == "a"
    assert job.status is JobStatus.RUNNING
    assert job.attempts == 1
    assert job.started_at == pytest.approx(clock(), abs=APPROX)
    assert job.lease_expires_at == pytest.approx(clock() + LEASE, abs=APPROX)
    stored = await get(broker, "a")
    assert stored.status is JobStatus.RUNNING and stored.token == job.token
    assert await claim(broker) == [], "a running job is not claimed twice"


async def test_claim_respects_limit_and_queue(broker: Broker, clock: FakeClock) -> None:
    await broker.enqueue([new(clock, f"j{i}") for i in range(5)] + [new(clock, "other", queue="q2")])
    assert len(await claim(broker, limit=3)) == 3
    assert len(await claim(broker, limit=3)) == 2
    assert await claim(broker, limit=3) == []
    [other] = await claim(broker, queue="q2")
    assert other.id == "other"


async def test_priority_then_run_at_then_publish_order(broker: Broker, clock: FakeClock) -> None:
    t = clock()
    await broker.enqueue(
        [
            new(clock, "low", priority=0, run_at=t - 5),
            new(clock, "high", priority=10, run_at=t),
            new(clock, "mid-late", priority=5, run_at=t - 1),
            new(clock, "mid-early", priority=5, run_at=t - 2),
            new(clock, "low-2", priority=0, run_at=t - 5),
        ]
    )
    order = [j.id for j in await claim(broker, limit=10)]
    assert order == ["high", "mid-early", "mid-late", "low", "low-2"]
    clock.advance(1)
    await broker.enqueue([new(clock, f"f{i}", run_at=clock()) for i in range(5)])
    assert [j.id for j in await claim(broker, limit=2)] == ["f0", "f1"]
    assert [j.id for j in await claim(broker, limit=5)] == ["f2", "f3", "f4"]


async def test_delayed_job_is_not_claimed_early(broker: Broker, clock: FakeClock) -> None:
    await broker.enqueue([new(clock, "later", run_at=clock() + 60)])
    job = await get(broker, "later")
    assert job.status is JobStatus.SCHEDULED
    assert await claim(broker) == []
    clock.advance(59)
    assert await claim(broker) == []
    assert await broker.promote_due(100) == 0
    clock.advance(2)
    [claimed] = await claim(broker)
    assert claimed.id == "later"


async def test_promote_due_moves_scheduled_to_queued(broker: Broker, clock: FakeClock) -> None:
    await broker.enqueue([new(clock, "s1", run_at=clock() + 10), new(clock, "s2", run_at=clock() + 100)])
    clock.advance(11)
    assert await broker.promote_due(100) == 1
    assert (await get(broker, "s1")).status is JobStatus.QUEUED
    assert (await get(broker, "s2")).status is JobStatus.SCHEDULED


async def test_large_batch(broker: Broker, clock: FakeClock) -> None:
    assert await broker.enqueue([new(clock, f"b{i:04d}") for i in range(1000)]) == [True] * 1000
    seen: set[str] = set()
    while batch := await claim(broker, limit=128):
        seen.update(j.id for j in batch)
    assert len(seen) == 1000


# --- completing ---------------------------------------------------------------------------


async def test_success_stores_result_until_expiry(broker: Broker, clock: FakeClock) -> None:
    await broker.enqueue([new(clock, "a")])
    [job] = await claim(broker)
    clock.advance(1)
    assert await broker.complete(
        [outcome(job, OutcomeKind.SUCCEEDED, result=b"42", expires_at=clock() + 100)]
    ) == [True]
    done = await get(broker, "a")
    assert done.status is JobStatus.SUCCEEDED
    assert done.result == b"42" and done.has_result
    assert done.finished_at == pytest.approx(clock(), abs=APPROX)
    assert done.lease_expires_at is None
    clock.advance(99)
    assert await broker.get("a") is not None
    assert await broker.prune(100) == 0
    clock.advance(2)
    assert await broker.get("a") is None, "an expired job reads as gone"
    assert await broker.list_jobs() == []
    assert await broker.prune(100) == 1
    assert await broker.get("a") is None


async def test_failure_records_error(broker: Broker, clock: FakeClock) -> None:
    await broker.enqueue([new(clock, "a")])
    [job] = await claim(broker)
    err = "Traceback (most recent call last):\n  ...\nValueError: boom"
    assert await broker.complete([outcome(job, OutcomeKind.FAILED, error=err, expires_at=None)]) == [True]
    failed = await get(broker, "a")
    assert failed.status is JobStatus.FAILED
    assert failed.error == err
    assert await claim(broker) == []


async def test_retry_outcome_reschedules_with_delay(broker: Broker, clock: FakeClock) -> None:
    await broker.enqueue([new(clock, "a")])
    [job] = await claim(broker)
    ok = await broker.complete([outcome(job, OutcomeKind.RETRY, error="ValueError: x", run_at=clock() + 30)])
    assert ok == [True]
    again = await get(broker, "a")
    assert again.status is JobStatus.SCHEDULED
    assert again.error == "ValueError: x"
    assert again.attempts == 1
    assert again.run_at == pytest.approx(clock() + 30, abs=APPROX)
    assert await claim(broker) == []
    clock.advance(31)
    [second] = await claim(broker)
    assert second.attempts == 2
    assert second.token != job.token


async def test_retry_outcome_without_delay_is_queued(broker: Broker, clock: FakeClock) -> None:
    await broker.enqueue([new(clock, "a")])
    [job] = await claim(broker)
    await broker.complete([outcome(job, OutcomeKind.RETRY, error="e", run_at=clock())])
    assert (await get(broker, "a")).status is JobStatus.QUEUED
    [again] = await claim(broker)
    assert again.attempts == 2


async def test_release_hands_the_lease_back_without_counting(broker: Broker, clock: FakeClock) -> None:
    await broker.enqueue([new(clock, "a")])
    [job] = await claim(broker)
    assert await broker.complete([outcome(job, OutcomeKind.RELEASE)]) == [True]
    back = await get(broker, "a")
    assert back.status is JobStatus.QUEUED
    assert back.attempts == 0
    [again] = await claim(broker)
    assert again.attempts == 1


async def test_batch_completion_applies_each_outcome(broker: Broker, clock: FakeClock) -> None:
    await broker.enqueue([new(clock, "a"), new(clock, "b"), new(clock, "c")])
    a, b, c = sorted(await claim(broker), key=lambda j: j.id)
    stale = Outcome(job_id="c", token=c.token + 99, kind=OutcomeKind.SUCCEEDED)
    res = await broker.complete(
        [
            outcome(a, OutcomeKind.SUCCEEDED, result=b"1", expires_at=clock() + 10),
            outcome(b, OutcomeKind.FAILED, error="bad"),
            stale,
            Outcome(job_id="missing", token=1, kind=OutcomeKind.SUCCEEDED),
        ]
    )
    assert res == [True, True, False, False]
    assert (await get(broker, "a")).status is JobStatus.SUCCEEDED
    assert (await get(broker, "b")).status is JobStatus.FAILED
    assert (await get(broker, "c")).status is JobStatus.RUNNING


async def test_second_completion_is_rejected(broker: Broker, clock: FakeClock) -> None:
    await broker.enqueue([new(clock, "a")])
    [job] = await claim(broker)
    assert await broker.complete([outcome(job, OutcomeKind.SUCCEEDED, result=b"1")]) == [True]
    assert await broker.complete([outcome(job, OutcomeKind.FAILED, error="late")]) == [False]
    assert (await get(broker, "a")).status is JobStatus.SUCCEEDED
