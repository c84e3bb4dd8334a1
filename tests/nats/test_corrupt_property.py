"""Random damage to a job record in the bucket: the worker survives, the neighbours run once, and
the damaged job ends finished; if it was quarantined, its error names what is wrong (issue #11)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from asynctask.brokers.nats import NatsBroker
from asynctask.models import JobStatus
from tests.backend_nats import factory
from tests.corrupt_property import ends_for, run_with_damage
from tests.nats.test_corrupt_records import damage as rewrite

pytestmark = pytest.mark.anyio

DELETE = "<deleted>"
# ``queue`` moves a job out of its queue's claims rather than break it: not this property's.
FIELDS = [
    "id", "task", "payload", "status", "priority", "attempts", "max_retries", "token", "run_at",
    "created_at", "pending", "timeout", "headers", "cancel_requested", "parent_id", "error", "meta",
    "lease_expires_at", "unknown_field",
]  # fmt: skip
VALUES: list[Any] = [DELETE, "", "x", "running", 1.5, -1, 0, 2**62, True, [], ["a"], {"a": 1}, b"bin", None]


@st.composite
def damages(draw: st.DrawFn) -> dict[str, Any] | bytes:
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=20))  # the whole record replaced
    fields = draw(st.lists(st.sampled_from(FIELDS), min_size=1, max_size=3, unique=True))
    return {field: draw(st.sampled_from(VALUES)) for field in fields}


@pytest.fixture
async def broker() -> AsyncIterator[NatsBroker]:
    async with factory(time.time) as opened:
        assert isinstance(opened, NatsBroker)
        yield opened


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(damage=damages(), good=st.integers(min_value=1, max_value=4))
@example(damage={"pending": 2**62}, good=1)
async def test_random_damage_never_stops_a_worker(
    broker: NatsBroker, damage: dict[str, Any] | bytes, good: int
) -> None:
    def change(data: bytes) -> bytes:
        if isinstance(damage, bytes):
            return damage
        record = msgspec.msgpack.decode(data)
        for field, value in damage.items():
            if value == DELETE:
                record.pop(field, None)
            else:
                record[field] = value
        return msgspec.msgpack.encode(record)

    async def apply(queue: str, job_id: str) -> None:
        await rewrite(broker, job_id, change)

    job, runs = await run_with_damage(broker, good, apply, ends_for(damage))
    assert runs[0] <= 1, "the damaged job ran at most once"
    error = job.error or ""
    quarantined = job.status is JobStatus.FAILED and error.startswith("corrupt job record: ")
    if quarantined and isinstance(damage, dict):
        assert any(field in error for field in damage) or "the record" in error, (error, damage)
