"""A malformed job hash is quarantined, never lost, and never takes its neighbours down
(issue #11, item 5; the rules are in asynctask/brokers/rules.py)."""

from __future__ import annotations

import re
import sys
from collections.abc import AsyncIterator

import anyio
import pytest
from redis.asyncio import Redis

from asynctask.brokers.redis import RedisBroker
from asynctask.models import JobStatus, Outcome, OutcomeKind
from asynctask.testing import FakeClock
from tests import corrupt_property
from tests.backend_redis import REDIS_URL
from tests.redis.helpers import broker_for, job

pytestmark = pytest.mark.anyio

# (field, value or None to delete it, the reason in the error)
DAMAGE = [
    ("attempts", b"abc", "field attempts is not an integer"),
    ("attempts", b"9223372036854775807", "field attempts is not an integer"),
    ("max_retries", None, "field max_retries is missing"),
    ("task", None, "field task is missing"),
    ("payload", None, "field payload is missing"),
    ("token", b"1.5", "field token is not an integer"),
    ("attempts", b"-3", "field attempts is negative"),
    ("run_at", b"soon", "field run_at is not a number"),
    ("status", b"bogus", "field status is not a job status"),
    ("status", None, "field status is missing"),
    ("tkey", b"zz", "field tkey is not a 16-digit sort key"),
    ("headers", b"garbage", "field headers is not a JSON object of strings"),
    ("headers", b"[]", "field headers is not a JSON object of strings"),
    # Passes the script's checks; the broker cannot decode it and quarantines it itself.
    ("task", b"\xff\xfe", "field task is not UTF-8 text"),
]


@pytest.fixture
async def setup(prefix: str) -> AsyncIterator[tuple[RedisBroker, Redis, FakeClock]]:
    clock = FakeClock()
    broker = broker_for(prefix, clock=clock)
    raw = Redis.from_url(REDIS_URL)
    await broker.open()
    try:
        yield broker, raw, clock
    finally:
        await broker.close()
        await raw.aclose()


async def damage(broker: RedisBroker, raw: Redis, job_id: str, field: str, value: bytes | None) -> None:
    key = broker.keys.queue("q").job(job_id)
    if value is None:
        assert await raw.hdel(key, field) == 1
    else:
        await raw.hset(key, field, value)


async def check_quarantined(broker: RedisBroker, job_id: str, reason: str) -> None:
    await corrupt_property.check_quarantined(broker, job_id, reason)
    assert [j.id for j in await broker.list_jobs(status=JobStatus.FAILED)] == [job_id]


@pytest.mark.parametrize(("field", "value", "reason"), DAMAGE)
async def test_a_corrupt_queued_record_is_quarantined_and_its_batch_runs(
    setup: tuple[RedisBroker, Redis, FakeClock], field: str, value: bytes | None, reason: str
) -> None:
    broker, raw, clock = setup
    await broker.enqueue([job(i, clock(), priority=9 if i == "bad" else 0) for i in ("bad", "g1", "g2")])
    await damage(broker, raw, "bad", field, value)
    claimed = await broker.claim("q", 10, lease=30, worker="w")
    assert sorted(j.id for j in claimed) == ["g1", "g2"]
    await check_quarantined(broker, "bad", reason)


@pytest.mark.parametrize(("field", "value", "reason"), [DAMAGE[0], DAMAGE[2], DAMAGE[3]])
async def test_a_corrupt_record_reads_as_failed_before_anyone_meets_it(
    setup: tuple[RedisBroker, Redis, FakeClock], field: str, value: bytes | None, reason: str
) -> None:
    broker, raw, clock = setup
    await broker.enqueue([job(i, clock()) for i in ("bad", "good")])
    await damage(broker, raw, "bad", field, value)
    bad = await broker.get("bad")
    assert bad is not None and bad.status is JobStatus.FAILED and bad.error == f"corrupt job record: {reason}"
    assert sorted(j.id for j in await broker.list_jobs()) == ["bad", "good"]


@pytest.mark.parametrize(("field", "value", "reason"), DAMAGE[:3])
async def test_a_corrupt_scheduled_record_is_quarantined_when_due(
    setup: tuple[RedisBroker, Redis, FakeClock], field: str, value: bytes | None, reason: str
) -> None:
    broker, raw, clock = setup
    await broker.enqueue([job(i, clock() + 10) for i in ("bad", "good")])
    await damage(broker, raw, "bad", field, value)
    clock.advance(11)
    await broker.promote_due(100)
    assert [j.id for j in await broker.claim("q", 10, lease=30, worker="w")] == ["good"]
    await check_quarantined(broker, "bad", reason)


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("max_retries", None, "field max_retries is missing"),
        ("attempts", b"abc", "field attempts is not an integer"),
        ("lease_expires_at", None, "a running job without lease_expires_at"),
    ],
)
async def test_a_running_record_damaged_is_rescued_into_quarantine(
    setup: tuple[RedisBroker, Redis, FakeClock], field: str, value: bytes | None, reason: str
) -> None:
    broker, raw, clock = setup
    await broker.enqueue([job("bad", clock()), job("good", clock())])
    assert len(await broker.claim("q", 1, lease=30, worker="w")) == 1
    await damage(broker, raw, "bad", field, value)
    clock.advance(31)
    assert await broker.rescue_expired(100) == 1
    assert [j.id for j in await broker.claim("q", 10, lease=30, worker="w")] == ["good"]
    await check_quarantined(broker, "bad", reason)


async def test_a_quarantined_record_can_be_deleted(setup: tuple[RedisBroker, Redis, FakeClock]) -> None:
    broker, raw, clock = setup
    await broker.enqueue([job("bad", clock())])
    await damage(broker, raw, "bad", "cseq", b"x")
    assert await broker.claim("q", 10, lease=30, worker="w") == []
    await check_quarantined(broker, "bad", "field cseq is not an integer")
    assert await broker.delete("bad")
    assert await broker.get("bad") is None


@pytest.mark.parametrize("command", ["cancel", "pause", "resume", "retry"])
async def test_commands_on_a_corrupt_record_quarantine_it_and_change_nothing_else(
    setup: tuple[RedisBroker, Redis, FakeClock], command: str
) -> None:
    broker, raw, clock = setup
    await broker.enqueue([job("bad", clock()), job("good", clock())])
    await damage(broker, raw, "bad", "pkey", None)
    await damage(broker, raw, "bad", "expires_at", b"never")
    call = getattr(broker, command)
    after = await (call("bad", expires_at=None) if command == "cancel" else call("bad"))
    assert after is not None and after.status is JobStatus.FAILED
    assert after.error == "corrupt job record: field pkey is missing"
    assert [j.id for j in await broker.claim("q", 10, lease=30, worker="w")] == ["good"]
    await check_quarantined(broker, "bad", "field pkey is missing")


async def test_the_jobs_command_lists_and_shows_a_corrupt_record(
    setup: tuple[RedisBroker, Redis, FakeClock], prefix: str
) -> None:
    broker, raw, clock = setup
    await broker.enqueue([job("bad", clock()), job("good", clock())])
    await damage(broker, raw, "bad", "max_retries", None)
    code = "from asynctask.cli import main; main()"
    cli = [
        sys.executable,
        "-c",
        code,
        "jobs",
        "tests.unit.test_secrets:app",
        "--broker",
        f"{REDIS_URL}?prefix={prefix}",
    ]
    listed = await anyio.run_process([*cli, "list"], check=False)
    assert listed.returncode == 0, listed.stderr.decode()
    lines = listed.stdout.decode().splitlines()
    assert any(re.match(r"bad\s+failed", line) for line in lines), lines
    assert any(re.match(r"good\s+queued", line) for line in lines), lines
    shown = await anyio.run_process([*cli, "show", "bad"], check=False)
    assert shown.returncode == 0, shown.stderr.decode()
    assert "corrupt job record: field max_retries is missing" in shown.stdout.decode()


async def test_a_garbage_expires_at_does_not_break_listing(
    setup: tuple[RedisBroker, Redis, FakeClock],
) -> None:
    broker, raw, clock = setup
    await broker.enqueue([job("bad", clock()), job("good", clock())])
    await damage(broker, raw, "bad", "expires_at", b"never")
    assert sorted(j.id for j in await broker.list_jobs()) == ["bad", "good"]
    assert [s.queue for s in await broker.queue_stats()] == ["q"]


async def test_a_child_finishing_under_a_corrupt_parent_fails_the_parent_only(
    setup: tuple[RedisBroker, Redis, FakeClock],
) -> None:
    broker, raw, clock = setup
    await broker.enqueue([job("parent", clock(), pending=1), job("child", clock(), parent_id="parent")])
    await damage(broker, raw, "parent", "pending", b"many")
    [child] = await broker.claim("q", 10, lease=30, worker="w")
    outcome = Outcome(job_id=child.id, token=child.token, kind=OutcomeKind.SUCCEEDED, result=b"1")
    assert await broker.complete([outcome]) == [True]
    assert (await broker.get("child")).status is JobStatus.SUCCEEDED  # type: ignore[union-attr]
    parent = await broker.get("parent")
    assert parent is not None and parent.status is JobStatus.FAILED
    assert parent.error == "corrupt job record: field pending is not an integer"
