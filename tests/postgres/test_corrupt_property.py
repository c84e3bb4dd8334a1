"""Random odd values the schema allows in a job row: the worker survives, the neighbours run
once, and the damaged job finishes: failed with a specific error, or run like any job when its
values are merely extreme (issue #11; rules in asynctask/brokers/rules.py)."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asynctask.brokers.postgres import PostgresBroker
from asynctask.models import JobStatus
from tests.backend_postgres import URL, postgres_broker
from tests.corrupt_property import run_with_damage

pytestmark = pytest.mark.anyio

I32 = (-(2**31), -1, 2**31 - 1)
# column -> values the schema accepts but publish never writes ("::type" for the cast)
VALUES: dict[str, tuple[str, st.SearchStrategy[Any]]] = {
    "attempts": ("integer", st.sampled_from(I32)),
    "priority": ("integer", st.sampled_from(I32)),
    "max_retries": ("integer", st.sampled_from((-(2**31), -1))),
    "pending": ("integer", st.sampled_from((-1, -(2**31)))),
    "token": ("bigint", st.sampled_from((-(2**63), -1, 2**63 - 1))),
    "run_at": ("double precision", st.sampled_from((math.nan, math.inf, -math.inf, 1e308, -1e308))),
    "created_at": ("double precision", st.sampled_from((math.nan, math.inf, -math.inf))),
    "timeout": ("double precision", st.sampled_from((math.nan, -1.0, 0.0, math.inf, 1e-300))),
    "headers": ("jsonb", st.sampled_from(('["a"]', '{"a": 1}', '"text"', "null", "{}", '{"a": "b"}'))),
    "payload": ("bytea", st.binary(max_size=16)),
    "meta": ("bytea", st.binary(max_size=16)),
}


@st.composite
def damages(draw: st.DrawFn) -> dict[str, Any]:
    columns = draw(st.lists(st.sampled_from(sorted(VALUES)), min_size=1, max_size=3, unique=True))
    return {column: draw(VALUES[column][1]) for column in columns}


@pytest.fixture
async def broker() -> AsyncIterator[PostgresBroker]:
    import time

    async with postgres_broker(time.time) as broker:
        yield broker


@pytest.fixture
async def admin() -> AsyncIterator[Any]:
    conn = await asyncpg.connect(URL)
    try:
        yield conn
    finally:
        await conn.close()


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(damage=damages(), good=st.integers(min_value=1, max_value=5))
async def test_random_odd_rows_cannot_stop_a_worker(
    broker: PostgresBroker, admin: Any, damage: dict[str, Any], good: int
) -> None:
    async def apply(queue: str, job_id: str) -> None:
        for column, value in damage.items():
            cast = VALUES[column][0]
            await admin.execute(
                f'UPDATE "{broker.schema}".jobs SET {column} = $1::{cast} WHERE id = $2', value, job_id
            )

    job, runs = await run_with_damage(broker, good, apply)
    assert runs[0] <= 1, "the damaged job ran at most once"
    if job.status is JobStatus.FAILED:
        assert job.error, "a failed job says why"
    if "headers" in damage and damage["headers"] not in ("{}", '{"a": "b"}'):
        assert runs[0] == 0
        assert job.error == "corrupt job record: field headers is not a JSON object of strings"
