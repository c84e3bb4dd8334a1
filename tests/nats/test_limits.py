"""The server's max_payload bounds a job record: bad sizes get a clear error, nothing is lost."""

from __future__ import annotations

import pytest

from asynctask.errors import PayloadTooLarge
from asynctask.models import JobStatus, NewJob, Outcome, OutcomeKind
from asynctask.testing import FakeClock
from tests.nats.conftest import BrokerMaker

pytestmark = pytest.mark.anyio


def new(clock: FakeClock, job_id: str, payload: bytes = b"{}") -> NewJob:
    return NewJob(id=job_id, task="t", queue="q", payload=payload, run_at=clock())


async def test_a_payload_over_the_limit_is_refused(brokers: BrokerMaker, clock: FakeClock) -> None:
    async with brokers(clock) as broker:
        big = b"x" * broker.store.conn.max_payload
        with pytest.raises(PayloadTooLarge, match="raise max_payload"):
            await broker.enqueue([new(clock, "ok"), new(clock, "big", big)])
        assert await broker.get("big") is None
        assert await broker.get("ok") is None, "a publish is all or nothing"


async def test_a_result_over_the_limit_fails_the_job_with_the_reason(
    brokers: BrokerMaker, clock: FakeClock
) -> None:
    async with brokers(clock) as broker:
        await broker.enqueue([new(clock, "a")])
        [job] = await broker.claim("q", 1, lease=30, worker="w")
        huge = b'"' + b"r" * broker.store.conn.max_payload + b'"'
        outcome = Outcome(job_id="a", token=job.token, kind=OutcomeKind.SUCCEEDED, result=huge)
        assert await broker.complete([outcome]) == [True]
        failed = await broker.get("a")
        assert failed is not None and failed.status is JobStatus.FAILED and failed.result is None
        assert failed.error is not None and "max_payload" in failed.error


async def test_a_state_over_the_limit_raises_and_changes_nothing(
    brokers: BrokerMaker, clock: FakeClock
) -> None:
    async with brokers(clock) as broker:
        await broker.enqueue([new(clock, "a")])
        [job] = await broker.claim("q", 1, lease=30, worker="w")
        assert await broker.save("a", job.token, state=b"1") is True
        with pytest.raises(PayloadTooLarge):
            await broker.save("a", job.token, state=b"s" * broker.store.conn.max_payload)
        kept = await broker.get("a")
        assert kept is not None and kept.state == b"1" and kept.status is JobStatus.RUNNING
