"""Redelivery and wake-ups across processes: a lapsed or handed-back job reaches an idle waiter.

Two brokers with their own connections stand for two worker processes. An idle broker waits on
the server (its watch's pull request), not in a polling loop: a change stored by the other one
wakes it, and it claims the job again with a new fencing token.
"""

from __future__ import annotations

import time

import anyio
import pytest

from asynctask.brokers.nats import NatsBroker
from asynctask.models import JobStatus, NewJob, Outcome, OutcomeKind
from asynctask.testing import FakeClock
from tests.nats.conftest import BrokerMaker

pytestmark = pytest.mark.anyio

LEASE = 30.0


def new(clock: FakeClock, job_id: str, **kw: object) -> NewJob:
    fields: dict[str, object] = {"id": job_id, "task": "t", "queue": "q", "payload": b"{}", "run_at": clock()}
    fields.update({"max_retries": 3, **kw})
    return NewJob(**fields)  # type: ignore[arg-type]


async def woken_by(waiter: NatsBroker, action: object) -> float:
    """Seconds until ``waiter``'s 30 s wait on ``q`` ends once ``action()`` has run."""
    woke = anyio.Event()
    elapsed = 0.0

    async def wait() -> None:
        nonlocal elapsed
        started = time.monotonic()
        await waiter.wait_for_jobs("q", 30)
        elapsed = time.monotonic() - started
        woke.set()

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(wait)
            await anyio.sleep(0.05)
            await action()  # type: ignore[operator]
            await woke.wait()
    return elapsed


async def test_a_lapsed_lease_is_redelivered_to_another_process(
    brokers: BrokerMaker, clock: FakeClock
) -> None:
    async with brokers(clock) as first, brokers(clock) as second:
        await first.enqueue([new(clock, "a")])
        [lost] = await first.claim("q", 1, lease=LEASE, worker="first")
        assert await second.claim("q", 1, lease=LEASE, worker="second") == []
        clock.advance(LEASE + 1)

        async def rescue() -> None:
            assert await first.rescue_expired(10) == 1

        assert await woken_by(second, rescue) < 5, "woken by the change, not by its 30 s timeout"
        [again] = await second.claim("q", 1, lease=LEASE, worker="second")
        assert (again.id, again.attempts, again.token) == ("a", 2, lost.token + 1)
        assert again.error is not None and "lease expired" in again.error


async def test_a_lease_handed_back_wakes_an_idle_process(brokers: BrokerMaker, clock: FakeClock) -> None:
    async with brokers(clock) as first, brokers(clock) as second:
        await first.enqueue([new(clock, "a")])
        [held] = await first.claim("q", 1, lease=LEASE, worker="first")

        async def release() -> None:
            outcome = Outcome(job_id="a", token=held.token, kind=OutcomeKind.RELEASE)
            assert await first.complete([outcome]) == [True]

        assert await woken_by(second, release) < 5
        [again] = await second.claim("q", 1, lease=LEASE, worker="second")
        assert again.attempts == 1, "a hand-back does not count the attempt"


async def test_an_idle_wait_sends_nothing_to_the_server(brokers: BrokerMaker, clock: FakeClock) -> None:
    async with brokers(clock) as broker:
        await broker.wait_for_jobs("q", 0.01)  # starts the watch
        before = broker.store.conn.nc.stats["out_msgs"]
        await broker.wait_for_jobs("q", 1.0)
        assert broker.store.conn.nc.stats["out_msgs"] - before <= 1, "no polling while idle"


async def test_a_retry_with_a_delay_is_held_until_its_time(brokers: BrokerMaker, clock: FakeClock) -> None:
    async with brokers(clock) as first, brokers(clock) as second:
        await first.enqueue([new(clock, "a")])
        [job] = await first.claim("q", 1, lease=LEASE, worker="first")
        retry = Outcome(job_id="a", token=job.token, kind=OutcomeKind.RETRY, error="e", run_at=clock() + 60)
        assert await first.complete([retry]) == [True]
        await second.wait_for_jobs("q", 0.2)
        assert await second.claim("q", 1, lease=LEASE, worker="second") == []
        clock.advance(61)
        with anyio.fail_after(5):
            await second.wait_for_jobs("q", 30)  # due now: returns at once
        [again] = await second.claim("q", 1, lease=LEASE, worker="second")
        assert again.attempts == 2 and (await first.get("a")).status is JobStatus.RUNNING  # type: ignore[union-attr]
