"""Random damage to a job document: the worker survives, the neighbours run once, and the damaged
job ends finished; if it was quarantined, its error names a damaged field (issue #11)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from asynctask.brokers.mongo import MongoBroker
from asynctask.models import JobStatus
from tests.backend_mongo import mongo_broker
from tests.corrupt_property import ends_for, run_with_damage

pytestmark = pytest.mark.anyio

DELETE = "<deleted>"
# Fields a hand edit may break; ``queue`` and the index fields (``phase``, ``seq``) move a job out
# of its queue's claims rather than break it, which is not what this property is about.
FIELDS = [
    "task", "payload", "status", "priority", "attempts", "max_retries", "token", "run_at",
    "created_at", "pending", "timeout", "headers", "cancel_requested", "parent_id", "error", "meta",
]  # fmt: skip
VALUES: list[Any] = [DELETE, "", "x", "running", 1.5, -1, 0, 2**62, True, [], ["a"], {"a": 1}, b"bin", None]


@st.composite
def damages(draw: st.DrawFn) -> dict[str, Any]:
    fields = draw(st.lists(st.sampled_from(FIELDS), min_size=1, max_size=3, unique=True))
    return {field: draw(st.sampled_from(VALUES)) for field in fields}


@pytest.fixture
async def broker() -> AsyncIterator[MongoBroker]:
    async with mongo_broker(time.time, transactions=False) as opened:
        yield opened


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(damage=damages(), good=st.integers(min_value=1, max_value=4))
@example(damage={"pending": 2**62}, good=1)
async def test_random_damage_never_stops_a_worker(
    broker: MongoBroker, damage: dict[str, Any], good: int
) -> None:
    async def apply(queue: str, job_id: str) -> None:
        unset = {field: "" for field, value in damage.items() if value == DELETE}
        fields = {field: value for field, value in damage.items() if value != DELETE}
        update = {k: v for k, v in (("$set", fields), ("$unset", unset)) if v}
        await broker.collection.update_one({"_id": job_id}, update)

    job, runs = await run_with_damage(broker, good, apply, ends_for(damage))
    assert runs[0] <= 1, "the damaged job ran at most once"
    if job.status is JobStatus.FAILED and job.error and job.error.startswith("corrupt job record: "):
        assert any(field in job.error for field in damage), (job.error, damage)
