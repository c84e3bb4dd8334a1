"""A claim commits without waiting for its WAL flush; its fencing token survives a forgotten claim.

A server crash may forget a claim committed in its last moments (``synchronous_commit = off`` for
the claim's transaction): the row is back as it was, queued with its previous token. Here that
crash is played by writing the row back by hand.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from asynctask.brokers.postgres import PostgresBroker
from asynctask.models import JobStatus, Lease, LeaseState, Outcome, OutcomeKind
from asynctask.testing import FakeClock
from tests.postgres.conftest import new_job

pytestmark = pytest.mark.anyio


async def test_a_claim_forgotten_by_a_crash_never_hands_its_token_out_again(
    pg: PostgresBroker, clock: FakeClock, admin: Any
) -> None:
    jobs = f'"{pg.schema}".jobs'
    await pg.enqueue([new_job(clock, "a")])
    before = await admin.fetchrow(f"SELECT status, token, attempts FROM {jobs} WHERE id = 'a'")
    [forgotten] = await pg.claim("q", 1, lease=30, worker="w1")
    # The crash: the claim's commit never reached the disk.
    await admin.execute(
        f"UPDATE {jobs} SET status = $2, token = $3, attempts = $4, started_at = NULL,"
        " lease_expires_at = NULL, worker = NULL WHERE id = $1",
        "a",
        *before,
    )
    [owner] = await pg.claim("q", 1, lease=30, worker="w2")
    assert owner.token > forgotten.token > before["token"]
    # The worker still running the forgotten claim is fenced off like any lost lease.
    assert await pg.save("a", forgotten.token, state=b"zombie") is False
    assert await pg.extend_leases([Lease("a", forgotten.token)], lease=30) == [LeaseState.LOST]
    stale = Outcome(job_id="a", token=forgotten.token, kind=OutcomeKind.SUCCEEDED, result=b'"zombie"')
    assert await pg.complete([stale]) == [False]
    done = Outcome(job_id="a", token=owner.token, kind=OutcomeKind.SUCCEEDED, result=b'"owner"')
    assert await pg.complete([done]) == [True]
    job = await pg.get("a")
    assert job is not None and (job.status, job.result, job.state) == (JobStatus.SUCCEEDED, b'"owner"', None)


async def test_tokens_grow_with_every_claim_from_the_server_clock_or_by_one(
    pg: PostgresBroker, clock: FakeClock, admin: Any
) -> None:
    jobs = f'"{pg.schema}".jobs'
    await pg.enqueue([new_job(clock, "a"), new_job(clock, "b")])
    # A token ahead of the server's clock (a clock set back, rows from elsewhere) still grows by one.
    await admin.execute(f"UPDATE {jobs} SET token = $1 WHERE id = 'b'", 2**62)
    start = time.time()
    a, b = sorted(await pg.claim("q", 2, lease=30, worker="w"), key=lambda j: j.id)
    assert b.token == 2**62 + 1
    # The fake clock is not the one used: tokens come from the server's, in microseconds.
    assert a.token >= int((start - 60) * 1_000_000)
    tokens = [a.token]
    for _ in range(3):
        release = Outcome(job_id="a", token=tokens[-1], kind=OutcomeKind.RELEASE)
        assert await pg.complete([release]) == [True]
        [again] = await pg.claim("q", 1, lease=30, worker="w")
        tokens.append(again.token)
    assert tokens == sorted(set(tokens))


async def test_only_the_claims_own_transaction_skips_the_flush(
    pg: PostgresBroker, clock: FakeClock, admin: Any
) -> None:
    await pg.enqueue([new_job(clock, "a"), new_job(clock, "b")])
    claim = pg._q["claim"]
    args = ("q", 1, clock(), 30.0, "w", [])
    async with admin.transaction():
        assert len(await admin.fetch(claim, *args)) == 1
        assert await admin.fetchval("SHOW synchronous_commit") == "off"
    # The session (a pooled connection's, next used to publish or complete) keeps its setting.
    assert await admin.fetchval("SHOW synchronous_commit") == "on"
    assert len(await admin.fetch(claim, *args)) == 1
    assert await admin.fetchval("SHOW synchronous_commit") == "on"
