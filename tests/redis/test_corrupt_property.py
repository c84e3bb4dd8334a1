"""Random damage to a job hash: the worker survives, the neighbours run once, the damaged job is
quarantined with an error naming a damaged field (issue #11; rules in asynctask/brokers/rules.py)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis

from asynctask.brokers.redis import RedisBroker
from asynctask.models import JobStatus
from tests.backend_redis import REDIS_URL
from tests.corrupt_property import run_with_damage
from tests.redis.helpers import broker_for

pytestmark = pytest.mark.anyio

INTEGER = re.compile(rb"-?\d{1,18}")
NUMBER = re.compile(rb"\s*[-+]?[\d.]+[eE]?[-+]?\d*\s*")
STATUSES = {s.value.encode() for s in JobStatus}
ODD = [b"", b"nan", b"inf", b"0x10", b"1_000", b"9" * 25, b"1.5", b" ", b"[]", b'{"a": 1}', b"\xff\xfe"]


def invalid(kind: str) -> st.SearchStrategy[bytes | None]:
    """Values the rules reject for a field of ``kind`` (``None``: the field deleted)."""
    raw = st.one_of(st.sampled_from(ODD), st.binary(max_size=12))
    checks = {
        "integer": lambda v: not INTEGER.fullmatch(v),
        "number": lambda v: not (NUMBER.fullmatch(v) and _floats(v)),
        "text": lambda v: not _utf8(v),
        "status": lambda v: v not in STATUSES,
        "sortkey": lambda v: not re.fullmatch(rb"[0-9a-fA-F]{16}", v),
        "headers": lambda v: not _header_map(v),
    }
    return st.one_of(st.none(), raw.filter(checks[kind]))


def _floats(v: bytes) -> bool:
    try:
        float(v)
    except ValueError:
        return False
    return True


def _utf8(v: bytes) -> bool:
    try:
        v.decode()
    except UnicodeDecodeError:
        return False
    return True


def _header_map(v: bytes) -> bool:
    import json

    try:
        value = json.loads(v)
    except ValueError:
        return False
    return isinstance(value, dict) and all(isinstance(x, str) for x in value.values())


# field -> kind; optional fields are only given bad values, never deleted.
FIELDS = {
    "attempts": "integer",
    "max_retries": "integer",
    "token": "integer",
    "priority": "integer",
    "cseq": "integer",
    "run_at": "number",
    "created_at": "number",
    "task": "text",
    "status": "status",
    "tkey": "sortkey",
    "pkey": "sortkey",
    "timeout": "number",
    "headers": "headers",
}
OPTIONAL = {"timeout", "headers"}


@st.composite
def damages(draw: st.DrawFn) -> dict[str, bytes | None]:
    fields = draw(st.lists(st.sampled_from(sorted(FIELDS)), min_size=1, max_size=3, unique=True))
    out: dict[str, bytes | None] = {}
    for field in fields:
        value = draw(invalid(FIELDS[field]))
        if value is None and field in OPTIONAL:
            value = b"garbage"
        out[field] = value
    return out


@pytest.fixture
async def broker(prefix: str) -> AsyncIterator[RedisBroker]:
    broker = broker_for(prefix)
    await broker.open()
    try:
        yield broker
    finally:
        await broker.close()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(damage=damages(), good=st.integers(min_value=1, max_value=6))
async def test_random_damage_is_quarantined(
    broker: RedisBroker, damage: dict[str, bytes | None], good: int
) -> None:
    raw = Redis.from_url(REDIS_URL)

    async def apply(queue: str, job_id: str) -> None:
        key = broker.keys.queue(queue).job(job_id)
        for field, value in damage.items():
            if value is None:
                await raw.hdel(key, field)
            else:
                await raw.hset(key, field, value)

    try:
        job, runs = await run_with_damage(broker, good, apply)
    finally:
        await raw.aclose()
    assert runs[0] == 0, "the damaged job never runs"
    assert job.status is JobStatus.FAILED
    assert job.error is not None and job.error.startswith("corrupt job record: "), job.error
    assert any(field in job.error for field in damage), (job.error, damage)
