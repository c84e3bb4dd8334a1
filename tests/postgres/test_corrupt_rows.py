"""Odd values in a job row cannot stop its queue (issue #11, item 8)."""

from __future__ import annotations

from typing import Any

import pytest

from asynctask.brokers.postgres import PostgresBroker
from asynctask.brokers.rules import ATTEMPTS_LIMIT
from asynctask.flow import TaskLimit
from asynctask.models import JobStatus, Outcome, OutcomeKind
from asynctask.testing import FakeClock
from tests.postgres.conftest import new_job

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("flow", [False, True], ids=["plain", "flow"])
async def test_attempts_at_the_integer_limit_do_not_stop_the_queue(
    pg: PostgresBroker, admin: Any, clock: FakeClock, flow: bool
) -> None:
    await pg.enqueue([new_job(clock, "bad", priority=5), new_job(clock, "good")])
    await admin.execute(f'UPDATE "{pg.schema}".jobs SET attempts = $1 WHERE id = $2', ATTEMPTS_LIMIT, "bad")
    limits = {"t": TaskLimit(concurrency=10)} if flow else None
    claimed = await pg.claim("q", 10, lease=30, worker="w", limits=limits)
    assert sorted(j.id for j in claimed) == ["bad", "good"]
    bad = next(j for j in claimed if j.id == "bad")
    assert bad.attempts == ATTEMPTS_LIMIT  # saturated: above any max_retries, so its last attempt
    await pg.complete([Outcome(job_id=bad.id, token=bad.token, kind=OutcomeKind.FAILED, error="boom")])
    after = await pg.get("bad")
    assert after is not None and after.status is JobStatus.FAILED


async def test_a_crashed_workers_job_says_why_it_failed(pg: PostgresBroker, clock: FakeClock) -> None:
    await pg.enqueue([new_job(clock, "a")])
    await pg.claim("q", 1, lease=30, worker="w")
    clock.advance(31)
    assert await pg.rescue_expired(10) == 1
    job = await pg.get("a")
    assert job is not None and job.status is JobStatus.FAILED and job.error is not None
    assert "while attempt 1 was running" in job.error
    assert "the worker crashed, was killed, or lost its broker connection" in job.error


async def test_a_fencing_token_at_the_bigint_limit_does_not_stop_the_queue(
    pg: PostgresBroker, admin: Any, clock: FakeClock
) -> None:
    await pg.enqueue([new_job(clock, "bad", priority=5), new_job(clock, "good")])
    await admin.execute(f'UPDATE "{pg.schema}".jobs SET token = $1 WHERE id = $2', 2**63 - 1, "bad")
    claimed = await pg.claim("q", 10, lease=30, worker="w")
    assert sorted(j.id for j in claimed) == ["bad", "good"]


@pytest.mark.parametrize("headers", ['["a"]', '{"a": 1}', '"text"', "null"])
async def test_headers_that_are_not_strings_fail_that_job_only(
    pg: PostgresBroker, admin: Any, clock: FakeClock, headers: str
) -> None:
    await pg.enqueue([new_job(clock, "bad", priority=5), new_job(clock, "good")])
    await admin.execute(f'UPDATE "{pg.schema}".jobs SET headers = $1::jsonb WHERE id = $2', headers, "bad")
    assert [j.id for j in await pg.claim("q", 10, lease=30, worker="w")] == ["good"]
    bad = await pg.get("bad")
    assert bad is not None and bad.status is JobStatus.FAILED
    assert bad.error == "corrupt job record: field headers is not a JSON object of strings"
    assert "bad" in [j.id for j in await pg.list_jobs(status=JobStatus.FAILED)]
    assert await pg.claim("q", 10, lease=30, worker="w") == []


async def test_negative_attempts_count_from_zero(pg: PostgresBroker, admin: Any, clock: FakeClock) -> None:
    await pg.enqueue([new_job(clock, "a")])
    await admin.execute(f'UPDATE "{pg.schema}".jobs SET attempts = $1 WHERE id = $2', -(2**31), "a")
    [job] = await pg.claim("q", 10, lease=30, worker="w")
    assert job.attempts == 1
