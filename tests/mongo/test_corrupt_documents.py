"""A damaged job document is quarantined, never lost, and never stalls its queue (issue #11; the
rules are in asynctask/brokers/rules.py)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from asynctask.brokers.mongo import MongoBroker
from asynctask.flow import TaskLimit
from asynctask.models import JobStatus
from asynctask.testing import FakeClock
from tests.backend_mongo import mongo_broker
from tests.corrupt_property import check_quarantined, run_with_damage
from tests.mongo.helpers import job

pytestmark = pytest.mark.anyio

DELETE = object()

# (field, stored value or DELETE, the reason in the error)
DAMAGE: list[tuple[str, Any, str]] = [
    ("task", DELETE, "field task is missing"),
    ("max_retries", DELETE, "field max_retries is missing"),
    ("attempts", "abc", "field attempts is not an integer"),
    ("token", "x", "field token is not an integer"),
    ("status", "bogus", "field status is not a job status"),
    ("status", DELETE, "field status is missing"),
    ("payload", "text", "field payload is not binary"),
    ("run_at", "soon", "field run_at is not a number"),
    ("priority", 1.5, "field priority is not an integer"),
    ("headers", "garbage", "field headers is not a list of name-value pairs"),
]
IDS = [f"{field}-{'deleted' if value is DELETE else value}" for field, value, _ in DAMAGE]


async def damage(broker: MongoBroker, job_id: str, field: str, value: Any) -> None:
    """Rewrite one field of the stored document with the raw client."""
    update = {"$unset": {field: ""}} if value is DELETE else {"$set": {field: value}}
    result = await broker.collection.update_one({"_id": job_id}, update)
    assert result.matched_count == 1


@pytest.mark.parametrize(("field", "value", "reason"), DAMAGE, ids=IDS)
async def test_a_corrupt_queued_document_is_quarantined_and_its_batch_runs(
    notx: MongoBroker, clock: FakeClock, field: str, value: Any, reason: str
) -> None:
    broker = notx
    await broker.enqueue([job(i, clock(), priority=9 if i == "bad" else 0) for i in ("bad", "g1", "g2")])
    await damage(broker, "bad", field, value)
    claimed = await broker.claim("q", 10, lease=30, worker="w")
    assert sorted(j.id for j in claimed) == ["g1", "g2"]
    await check_quarantined(broker, "bad", reason)


@pytest.mark.parametrize(("field", "value", "reason"), DAMAGE[:4], ids=IDS[:4])
async def test_a_corrupt_document_first_in_line_does_not_stall_a_claim_of_one(
    broker: MongoBroker, clock: FakeClock, field: str, value: Any, reason: str
) -> None:
    await broker.enqueue([job(i, clock(), priority=9 if i == "bad" else 0) for i in ("bad", "good")])
    await damage(broker, "bad", field, value)
    assert [j.id for j in await broker.claim("q", 1, lease=30, worker="w")] == ["good"]
    await check_quarantined(broker, "bad", reason)


@pytest.mark.parametrize(
    ("field", "value", "reason"), [DAMAGE[0], DAMAGE[2], DAMAGE[6]], ids=[IDS[0], IDS[2], IDS[6]]
)
async def test_a_corrupt_document_reads_as_failed_before_anyone_meets_it(
    notx: MongoBroker, clock: FakeClock, field: str, value: Any, reason: str
) -> None:
    await notx.enqueue([job(i, clock()) for i in ("bad", "good")])
    await damage(notx, "bad", field, value)
    bad = await notx.get("bad")
    assert bad is not None and bad.status is JobStatus.FAILED
    assert bad.error == f"corrupt job record: {reason}"
    assert sorted(j.id for j in await notx.list_jobs()) == ["bad", "good"]


async def test_a_corrupt_child_counts_out_of_its_parent(notx: MongoBroker, clock: FakeClock) -> None:
    await notx.enqueue([job("parent", clock(), pending=1), job("child", clock(), parent_id="parent")])
    await damage(notx, "child", "task", DELETE)
    # The child, quarantined, counts out of its parent, which is released and claimed at once.
    assert [j.id for j in await notx.claim("q", 10, lease=30, worker="w")] == ["parent"]
    await check_quarantined(notx, "child", "field task is missing")


@pytest.mark.parametrize(("field", "value", "reason"), DAMAGE[:7], ids=IDS[:7])
async def test_a_worker_survives_a_corrupt_document(field: str, value: Any, reason: str) -> None:
    async with mongo_broker(time.time, transactions=False) as broker:

        async def apply(queue: str, job_id: str) -> None:
            await damage(broker, job_id, field, value)

        bad, runs = await run_with_damage(broker, 3, apply)
    assert runs[0] == 0, "the damaged job never runs"
    assert bad.status is JobStatus.FAILED
    assert bad.error == f"corrupt job record: {reason}"


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("max_retries", DELETE, "field max_retries is missing"),
        ("attempts", "abc", "field attempts is not an integer"),
        ("token", DELETE, "field token is missing"),
        ("lease_expires_at", DELETE, "a running job without lease_expires_at"),
        ("lease_expires_at", "soon", "field lease_expires_at is not a number"),
    ],
)
async def test_a_running_document_damaged_is_rescued_into_quarantine(
    notx: MongoBroker, clock: FakeClock, field: str, value: Any, reason: str
) -> None:
    await notx.enqueue([job("bad", clock(), priority=9), job("good", clock())])
    assert [j.id for j in await notx.claim("q", 1, lease=30, worker="w")] == ["bad"]
    await damage(notx, "bad", field, value)
    clock.advance(31)
    assert await notx.rescue_expired(100) == 1
    assert [j.id for j in await notx.claim("q", 10, lease=30, worker="w")] == ["good"]
    await check_quarantined(notx, "bad", reason)


async def test_a_quarantined_document_can_be_deleted(notx: MongoBroker, clock: FakeClock) -> None:
    await notx.enqueue([job("bad", clock())])
    await damage(notx, "bad", "attempts", "abc")
    assert await notx.claim("q", 10, lease=30, worker="w") == []
    await check_quarantined(notx, "bad", "field attempts is not an integer")
    assert await notx.delete("bad")
    assert await notx.get("bad") is None


@pytest.mark.parametrize(("field", "value", "reason"), DAMAGE, ids=IDS)
async def test_a_claim_under_flow_limits_quarantines_a_corrupt_document(
    notx: MongoBroker, clock: FakeClock, field: str, value: Any, reason: str
) -> None:
    await notx.enqueue([job(i, clock(), priority=9 if i == "bad" else 0) for i in ("bad", "g1", "g2")])
    await damage(notx, "bad", field, value)
    await notx.set_queue_limits("q", concurrency=10, rate=None)  # claims take the flow path
    claimed = await notx.claim("q", 10, lease=30, worker="w", limits={"t": TaskLimit(concurrency=10)})
    assert sorted(j.id for j in claimed) == ["g1", "g2"]
    await check_quarantined(notx, "bad", reason)


@pytest.mark.parametrize("command", ["cancel", "pause", "retry"])
async def test_commands_on_a_corrupt_document_do_not_raise(
    notx: MongoBroker, clock: FakeClock, command: str
) -> None:
    await notx.enqueue([job("bad", clock()), job("good", clock())])
    await damage(notx, "bad", "attempts", "abc")
    await damage(notx, "bad", "pending", "many")
    call = getattr(notx, command)
    after = await (call("bad", expires_at=None) if command == "cancel" else call("bad"))
    assert after is not None and after.status is JobStatus.FAILED
    assert after.error == "corrupt job record: field attempts is not an integer"
    assert [j.id for j in await notx.claim("q", 10, lease=30, worker="w")] == ["good"]
