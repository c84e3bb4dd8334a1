"""The broker contract, part 2: leases and fencing, state and results, management, listing, wake-ups."""

from __future__ import annotations

import anyio
import pytest

from asynctask.brokers.base import Broker
from asynctask.models import JobStatus, Lease, LeaseState, OutcomeKind
from asynctask.testing import FakeClock
from asynctask.testing.contract.suite.helpers import APPROX, LEASE, claim, get, new, outcome

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
    # The rule text of asynctask/brokers/rules.py: it says what probably happened.
    assert failed.error and failed.error.startswith("lease expired at ")
    assert failed.error.endswith(
        " while attempt 1 was running (the worker crashed, was killed, or lost its broker connection)"
    )
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
