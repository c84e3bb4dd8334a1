"""The broker contract: every backend passes every test here, on a fake clock.

Modelled on River's driver suite. Each test talks to the broker protocol directly; the worker
level of the contract is in ``test_worker.py``.
"""

from __future__ import annotations

import anyio
import pytest

from asynctask.brokers import Broker
from asynctask.models import Job, JobStatus, Lease, LeaseState, NewJob, Outcome, OutcomeKind
from asynctask.testing import FakeClock

pytestmark = pytest.mark.anyio

LEASE = 30.0
APPROX = 1e-3


def new(clock: FakeClock, job_id: str, **kw: object) -> NewJob:
    fields: dict[str, object] = {
        "id": job_id,
        "task": "t",
        "queue": "q",
        "payload": b'{"n":1}',
        "max_retries": 2,
        "run_at": clock(),
    }
    fields.update(kw)
    return NewJob(**fields)  # type: ignore[arg-type]


async def claim(broker: Broker, limit: int = 10, queue: str = "q") -> list[Job]:
    return await broker.claim(queue, limit, lease=LEASE, worker="w1")


async def get(broker: Broker, job_id: str) -> Job:
    job = await broker.get(job_id)
    assert job is not None, f"job {job_id} not found"
    return job


def outcome(job: Job, kind: OutcomeKind, **kw: object) -> Outcome:
    return Outcome(job_id=job.id, token=job.token, kind=kind, **kw)  # type: ignore[arg-type]


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


# --- leases, rescue, fencing -----------------------------------------------------------------


async def test_expired_lease_is_rescued_and_reclaimed(broker: Broker, clock: FakeClock) -> None:
    await broker.enqueue([new(clock, "a")])
    [first] = await claim(broker)
    clock.advance(LEASE - 1)
    assert await broker.rescue_expired(100) == 0
    clock.advance(2)
    assert await broker.rescue_expired(100) == 1
    rescued = await get(broker, "a")
    assert rescued.status is JobStatus.QUEUED
    assert rescued.error and "lease expired" in rescued.error
    [second] = await claim(broker)
    assert second.attempts == 2
    assert second.token != first.token


async def test_stale_token_cannot_overwrite_new_owner(broker: Broker, clock: FakeClock) -> None:
    await broker.enqueue([new(clock, "a")])
    [zombie] = await claim(broker)
    clock.advance(LEASE + 1)
    await broker.rescue_expired(100)
    [owner] = await claim(broker)
    assert await broker.complete([outcome(zombie, OutcomeKind.SUCCEEDED, result=b"zombie")]) == [False]
    assert await broker.save("a", zombie.token, state=b'"zombie"') is False
    assert await broker.extend_leases([Lease("a", zombie.token)], lease=LEASE) == [LeaseState.LOST]
    assert await broker.complete([outcome(owner, OutcomeKind.SUCCEEDED, result=b"owner")]) == [True]
    done = await get(broker, "a")
    assert done.result == b"owner"
    assert done.state is None


async def test_heartbeat_keeps_the_lease(broker: Broker, clock: FakeClock) -> None:
    await broker.enqueue([new(clock, "a"), new(clock, "b")])
    a, b = sorted(await claim(broker), key=lambda j: j.id)
    for _ in range(3):
        clock.advance(LEASE - 5)
        states = await broker.extend_leases([Lease(a.id, a.token), Lease(b.id, b.token + 7)], lease=LEASE)
        assert states == [LeaseState.OK, LeaseState.LOST]
    held = await get(broker, "a")
    assert held.lease_expires_at == pytest.approx(clock() + LEASE, abs=APPROX)
    assert await broker.rescue_expired(100) == 1, "only b, whose lease was not extended"
    assert (await get(broker, "a")).status is JobStatus.RUNNING
    assert (await get(broker, "b")).status is JobStatus.QUEUED


async def test_rescue_without_retries_left_fails_the_job(broker: Broker, clock: FakeClock) -> None:
    await broker.enqueue([new(clock, "a", max_retries=0)])
    await claim(broker)
    clock.advance(LEASE + 1)
    assert await broker.rescue_expired(100) == 1
    failed = await get(broker, "a")
    assert failed.status is JobStatus.FAILED
    assert failed.error and "lease expired" in failed.error
    assert await claim(broker) == []


# --- state and results ----------------------------------------------------------------------


async def test_state_survives_retry_and_rescue(broker: Broker, clock: FakeClock) -> None:
    await broker.enqueue([new(clock, "a")])
    [job] = await claim(broker)
    assert await broker.save("a", job.token, state=b'{"cursor":1}') is True
    await broker.complete([outcome(job, OutcomeKind.RETRY, error="e", run_at=clock())])
    [second] = await claim(broker)
    assert second.state == b'{"cursor":1}'
    assert await broker.save("a", second.token, state=b'{"cursor":2}') is True
    clock.advance(LEASE + 1)
    await broker.rescue_expired(100)
    [third] = await claim(broker)
    assert third.state == b'{"cursor":2}'


async def test_saved_result_is_kept_when_completion_has_none(broker: Broker, clock: FakeClock) -> None:
    await broker.enqueue([new(clock, "a"), new(clock, "b")])
    a, b = sorted(await claim(broker), key=lambda j: j.id)
    assert await broker.save("a", a.token, result=b'"saved"') is True
    assert await broker.save("b", b.token, result=b'"saved"') is True
    await broker.complete(
        [outcome(a, OutcomeKind.SUCCEEDED), outcome(b, OutcomeKind.SUCCEEDED, result=b'"returned"')]
    )
    assert (await get(broker, "a")).result == b'"saved"'
    assert (await get(broker, "b")).result == b'"returned"'


async def test_save_requires_a_running_job(broker: Broker, clock: FakeClock) -> None:
    await broker.enqueue([new(clock, "a")])
    assert await broker.save("a", 0, state=b"1") is False
    assert await broker.save("missing", 1, state=b"1") is False


# --- cancel, retry, delete, list -----------------------------------------------------------


async def test_cancel_queued_job(broker: Broker, clock: FakeClock) -> None:
    await broker.enqueue([new(clock, "a"), new(clock, "later", run_at=clock() + 100)])
    job = await broker.cancel("a", expires_at=clock() + 50)
    assert job is not None and job.status is JobStatus.CANCELLED
    later = await broker.cancel("later", expires_at=None)
    assert later is not None and later.status is JobStatus.CANCELLED
    clock.advance(200)
    assert await claim(broker) == []
    assert await broker.get("a") is None, "cancelled jobs expire like finished ones"
    assert await broker.cancel("missing", expires_at=None) is None


async def test_cancel_running_job_is_requested_then_confirmed(broker: Broker, clock: FakeClock) -> None:
    await broker.enqueue([new(clock, "a")])
    [job] = await claim(broker)
    requested = await broker.cancel("a", expires_at=None)
    assert requested is not None
    assert requested.status is JobStatus.RUNNING and requested.cancel_requested
    assert await broker.extend_leases([Lease("a", job.token)], lease=LEASE) == [LeaseState.CANCEL]
    assert await broker.complete([outcome(job, OutcomeKind.CANCELLED, error="cancelled")]) == [True]
    assert (await get(broker, "a")).status is JobStatus.CANCELLED


async def test_cancel_finished_job_changes_nothing(broker: Broker, clock: FakeClock) -> None:
    await broker.enqueue([new(clock, "a")])
    [job] = await claim(broker)
    await broker.complete([outcome(job, OutcomeKind.SUCCEEDED, result=b"1")])
    after = await broker.cancel("a", expires_at=None)
    assert after is not None and after.status is JobStatus.SUCCEEDED


async def test_retry_a_failed_job_from_the_dead_letter(broker: Broker, clock: FakeClock) -> None:
    await broker.enqueue([new(clock, "a", max_retries=0)])
    [job] = await claim(broker)
    await broker.complete([outcome(job, OutcomeKind.FAILED, error="boom", expires_at=clock() + 10)])
    again = await broker.retry("a")
    assert again is not None
    assert again.status is JobStatus.QUEUED and again.attempts == 0 and again.expires_at is None
    clock.advance(20)
    [reclaimed] = await claim(broker)
    assert reclaimed.attempts == 1
    assert await broker.retry("missing") is None


async def test_retry_of_an_unfinished_job_changes_nothing(broker: Broker, clock: FakeClock) -> None:
    await broker.enqueue([new(clock, "a")])
    job = await broker.retry("a")
    assert job is not None and job.status is JobStatus.QUEUED
    assert len(await claim(broker)) == 1


async def test_delete(broker: Broker, clock: FakeClock) -> None:
    await broker.enqueue([new(clock, "a"), new(clock, "b")])
    [job] = await claim(broker, limit=1)
    assert await broker.delete(job.id) is True
    assert await broker.delete(job.id) is False
    assert await broker.get(job.id) is None
    assert await broker.complete([outcome(job, OutcomeKind.SUCCEEDED)]) == [False]
    assert await broker.extend_leases([Lease(job.id, job.token)], lease=LEASE) == [LeaseState.LOST]
    other = "b" if job.id == "a" else "a"
    assert await broker.delete(other) is True
    assert await claim(broker) == []


async def test_list_jobs_filters_and_orders_newest_first(broker: Broker, clock: FakeClock) -> None:
    for i in range(4):
        await broker.enqueue([new(clock, f"a{i}", task="alpha")])
        clock.advance(1)
    await broker.enqueue([new(clock, "b0", task="beta", queue="q2")])
    await claim(broker, limit=1)  # a0 runs
    assert [j.id for j in await broker.list_jobs()] == ["b0", "a3", "a2", "a1", "a0"]
    assert [j.id for j in await broker.list_jobs(task="alpha", limit=2)] == ["a3", "a2"]
    assert [j.id for j in await broker.list_jobs(queue="q2")] == ["b0"]
    assert [j.id for j in await broker.list_jobs(status=JobStatus.RUNNING)] == ["a0"]
    assert [j.id for j in await broker.list_jobs(status=JobStatus.QUEUED, task="alpha")] == ["a3", "a2", "a1"]
    assert await broker.list_jobs(status=JobStatus.FAILED) == []


# --- wake-ups ---------------------------------------------------------------------------------


async def test_wait_for_jobs_returns_when_work_is_ready(broker: Broker, clock: FakeClock) -> None:
    await broker.enqueue([new(clock, "ready")])
    with anyio.fail_after(5):
        await broker.wait_for_jobs("q", timeout=30)


async def test_wait_for_jobs_is_woken_by_a_publish(broker: Broker, clock: FakeClock) -> None:
    # With push wake-ups a publish ends the wait long before its 60 s timeout; without them
    # the wait must still end by its (short) timeout.
    timeout = 60.0 if broker.capabilities.push_wakeups else 0.5
    woke = anyio.Event()

    async def waiter() -> None:
        await broker.wait_for_jobs("q", timeout=timeout)
        woke.set()

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter)
            await anyio.sleep(0.05)  # let the waiter start waiting (a wake-up before it is also fine)
            await broker.enqueue([new(clock, "late")])
            await woke.wait()
    [job] = await claim(broker)
    assert job.id == "late"


async def test_an_expired_id_can_be_reused_and_tokens_keep_rising(broker: Broker, clock: FakeClock) -> None:
    await broker.enqueue([new(clock, "daily")])
    [old] = await claim(broker)
    await broker.complete([outcome(old, OutcomeKind.SUCCEEDED, result=b"1", expires_at=clock() + 10)])
    assert await broker.enqueue([new(clock, "daily")]) == [False], "not yet expired"
    clock.advance(11)
    assert await broker.enqueue([new(clock, "daily", payload=b'"fresh"')]) == [True]
    fresh = await get(broker, "daily")
    assert fresh.status is JobStatus.QUEUED and fresh.payload == b'"fresh"' and fresh.result is None
    [again] = await claim(broker)
    assert again.token > old.token, "the old owner's token can never match the new job"
    assert await broker.complete([outcome(old, OutcomeKind.FAILED, error="zombie")]) == [False]
