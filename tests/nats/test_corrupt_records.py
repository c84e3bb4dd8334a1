"""A damaged job record in the bucket is quarantined, never lost, and never stalls its queue or
crashes the index (issue #11; the rules are in asynctask/brokers/rules.py)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import msgspec
import nats
import pytest

from asynctask.brokers.nats import NatsBroker
from asynctask.models import JobStatus, NewJob, Outcome, OutcomeKind
from asynctask.testing import FakeClock
from tests.backend_nats import factory, server_url
from tests.corrupt_property import check_quarantined, run_with_damage
from tests.nats.conftest import BrokerMaker

pytestmark = pytest.mark.anyio


def reshaped(change: Callable[[dict[str, Any]], Any]) -> Callable[[bytes], bytes]:
    """A damage that decodes the stored map, changes it, and stores what ``change`` returns."""

    def apply(data: bytes) -> bytes:
        record = msgspec.msgpack.decode(data)
        out = change(record)
        return msgspec.msgpack.encode(record if out is None else out)

    return apply


def without(field: str) -> Callable[[bytes], bytes]:
    return reshaped(lambda record: record.pop(field) and None)


def setting(field: str, value: Any) -> Callable[[bytes], bytes]:
    return reshaped(lambda record: record.__setitem__(field, value))


# (name, damage of the stored bytes, the reason in the error)
DAMAGE: list[tuple[str, Callable[[bytes], bytes], str]] = [
    ("garbage", lambda data: b"\xc1 not msgpack", "the record is not MessagePack"),
    ("truncated", lambda data: data[: len(data) // 2], "the record is not MessagePack"),
    ("a-list", lambda data: msgspec.msgpack.encode([1, 2, 3]), "the record is not a map"),
    ("no-task", without("task"), "field task is missing"),
    ("attempts-text", setting("attempts", "abc"), "field attempts is not an integer"),
    ("status-bogus", setting("status", "bogus"), "field status is not a job status"),
    ("payload-text", setting("payload", "text"), "field payload is not bytes"),
    ("running-no-lease", setting("status", "running"), "a running job without lease_expires_at"),
]
IDS = [name for name, _, _ in DAMAGE]


def new(clock: FakeClock, job_id: str, **kw: Any) -> NewJob:
    fields: dict[str, Any] = {"id": job_id, "task": "t", "queue": "q", "payload": b"{}", "run_at": clock()}
    fields.update(kw)
    return NewJob(**fields)


async def damage(broker: NatsBroker, job_id: str, change: Callable[[bytes], bytes]) -> int:
    """Rewrite the job's record with a raw client; returns its new revision."""
    subject = broker.layout.subject(job_id)
    nc = await nats.connect(server_url())
    try:
        js = nc.jetstream()
        stored = await js.get_last_msg(broker.layout.stream, subject)
        ack = await js.publish(subject, change(stored.data or b""))
    finally:
        await nc.close()
    return int(ack.seq)


@pytest.mark.parametrize(("name", "change", "reason"), DAMAGE, ids=IDS)
async def test_a_corrupt_queued_record_is_quarantined_and_its_batch_runs(
    brokers: BrokerMaker, clock: FakeClock, name: str, change: Callable[[bytes], bytes], reason: str
) -> None:
    async with brokers(clock) as broker:
        await broker.enqueue([new(clock, i, priority=9 if i == "bad" else 0) for i in ("bad", "g1", "g2")])
        await broker.list_jobs()  # the index is up before the damage: the watch meets it
        rev = await damage(broker, "bad", change)
        assert await broker._index.caught_up(rev, 10)  # type: ignore[union-attr]
        claimed = await broker.claim("q", 10, lease=30, worker="w")
        assert sorted(j.id for j in claimed) == ["g1", "g2"]
        await check_quarantined(broker, "bad", reason)


@pytest.mark.parametrize(("name", "change", "reason"), DAMAGE[:4], ids=IDS[:4])
async def test_a_broker_starting_on_a_corrupt_record_claims_the_others(
    brokers: BrokerMaker, clock: FakeClock, name: str, change: Callable[[bytes], bytes], reason: str
) -> None:
    async with brokers(clock) as first:
        await first.enqueue([new(clock, i, priority=9 if i == "bad" else 0) for i in ("bad", "good")])
        await damage(first, "bad", change)
    async with brokers(clock) as broker:
        assert [j.id for j in await broker.claim("q", 1, lease=30, worker="w")] == ["good"]
        await check_quarantined(broker, "bad", reason)


@pytest.fixture
async def real_time() -> AsyncIterator[NatsBroker]:
    async with factory(time.time) as broker:
        assert isinstance(broker, NatsBroker)
        yield broker


@pytest.mark.parametrize(("name", "change", "reason"), DAMAGE, ids=IDS)
async def test_a_worker_survives_a_corrupt_record(
    real_time: NatsBroker, name: str, change: Callable[[bytes], bytes], reason: str
) -> None:
    async def apply(queue: str, job_id: str) -> None:
        await damage(real_time, job_id, change)

    bad, runs = await run_with_damage(real_time, 3, apply)
    assert runs[0] == 0, "the damaged job never runs"
    assert bad.status is JobStatus.FAILED
    assert bad.error == f"corrupt job record: {reason}"


async def test_a_record_damaged_while_running_refuses_its_outcome_and_can_be_deleted(
    brokers: BrokerMaker, clock: FakeClock
) -> None:
    async with brokers(clock) as broker:
        await broker.enqueue([new(clock, "bad"), new(clock, "good")])
        held = await broker.claim("q", 10, lease=30, worker="w")
        rev = await damage(broker, "bad", lambda data: b"\xc1")
        assert await broker._index.caught_up(rev, 10)  # type: ignore[union-attr]
        outcomes = [Outcome(job_id=j.id, token=j.token, kind=OutcomeKind.SUCCEEDED) for j in held]
        done = dict(zip([j.id for j in held], await broker.complete(outcomes), strict=True))
        assert done == {"bad": False, "good": True}
        clock.advance(31)
        assert await broker.rescue_expired(100) == 0, "a quarantined job has no lease"
        await check_quarantined(broker, "bad", "the record is not MessagePack")
        assert await broker.delete("bad")
        assert await broker.get("bad") is None


@pytest.mark.parametrize("command", ["cancel", "pause", "resume"])
async def test_commands_on_a_corrupt_record_do_not_raise(
    brokers: BrokerMaker, clock: FakeClock, command: str
) -> None:
    async with brokers(clock) as broker:
        await broker.enqueue([new(clock, "bad"), new(clock, "good")])
        await damage(broker, "bad", without("task"))
        call = getattr(broker, command)
        after = await (call("bad", expires_at=None) if command == "cancel" else call("bad"))
        assert after is not None and after.status is JobStatus.FAILED
        assert after.error == "corrupt job record: field task is missing"
        assert [j.id for j in await broker.claim("q", 10, lease=30, worker="w")] == ["good"]
