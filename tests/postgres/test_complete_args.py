"""The complete statement's compact parameters: NULL for a column every outcome leaves empty, NULL
kinds for an all-success batch, and the claim's rows read by position."""

from __future__ import annotations

import pytest

from asynctask.brokers.postgres import PostgresBroker
from asynctask.brokers.postgres.outcomes import complete_args
from asynctask.models import JobStatus, Outcome, OutcomeKind
from asynctask.testing import FakeClock
from tests.postgres.conftest import new_job

pytestmark = pytest.mark.anyio


def test_empty_columns_and_all_success_kinds_go_as_null() -> None:
    plain = [Outcome(job_id=i, token=1, kind=OutcomeKind.SUCCEEDED) for i in "ab"]
    ids, tokens, kinds, results, errors, run_ats, expires, now, channel, notify, metas = complete_args(
        plain, 5.0, "ch", True
    )
    assert (ids, tokens, kinds) == (["a", "b"], [1, 1], None)
    assert results is errors is run_ats is expires is metas is None
    assert (now, channel, notify) == (5.0, "ch", True)

    mixed = [plain[0], Outcome(job_id="c", token=2, kind=OutcomeKind.RETRY, run_at=9.0)]
    args = complete_args(mixed, 5.0, "ch", True)
    assert args[2] == ["succeeded", "retry"]
    assert args[5] == [None, 9.0]
    assert args[3] is None


async def test_all_success_batch_keeps_saved_results_and_finishes(
    pg: PostgresBroker, clock: FakeClock
) -> None:
    await pg.enqueue([new_job(clock, "a"), new_job(clock, "b", headers={"k": "v"})])
    claimed = {j.id: j for j in await pg.claim("q", 10, lease=30, worker="w")}
    assert claimed["b"].headers == {"k": "v"} and claimed["a"].status is JobStatus.RUNNING
    assert await pg.save("a", claimed["a"].token, result=b"saved")
    applied = await pg.complete(
        [Outcome(job_id=j.id, token=j.token, kind=OutcomeKind.SUCCEEDED) for j in claimed.values()]
    )
    assert applied == [True, True]
    a, b = await pg.get("a"), await pg.get("b")
    assert a is not None and b is not None
    assert (a.status, a.result, a.finished_at, a.expires_at) == (JobStatus.SUCCEEDED, b"saved", clock(), None)
    assert (b.status, b.result) == (JobStatus.SUCCEEDED, None)


async def test_mixed_kinds_with_empty_columns(pg: PostgresBroker, clock: FakeClock) -> None:
    await pg.enqueue([new_job(clock, "a"), new_job(clock, "b"), new_job(clock, "c")])
    jobs = {j.id: j for j in await pg.claim("q", 10, lease=30, worker="w")}
    kinds = {"a": OutcomeKind.RELEASE, "b": OutcomeKind.PAUSE, "c": OutcomeKind.SUCCEEDED}
    outcomes = [Outcome(job_id=i, token=jobs[i].token, kind=k) for i, k in kinds.items()]
    assert await pg.complete(outcomes) == [True, True, True]
    after = {i: await pg.get(i) for i in kinds}
    assert {i: (j.status, j.attempts) for i, j in after.items() if j is not None} == {
        "a": (JobStatus.QUEUED, 0),
        "b": (JobStatus.PAUSED, 0),
        "c": (JobStatus.SUCCEEDED, 1),
    }
