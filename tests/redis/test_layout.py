"""Redis-specific promises the contract suite cannot see: key layout, encodings, TTLs, indexes."""

from __future__ import annotations

import random
from importlib.resources import files

import pytest
from redis.asyncio import Redis
from redis.crc import key_slot

from asynctask.brokers.redis import RedisBroker
from asynctask.brokers.redis.codec import priority_key, time_key
from asynctask.brokers.redis.keys import Keys
from asynctask.errors import InvalidName
from asynctask.models import JobStatus, Outcome, OutcomeKind
from asynctask.testing import FakeClock
from tests.backend_redis import REDIS_URL
from tests.redis.helpers import broker_for, job

pytestmark = pytest.mark.anyio


def test_every_key_of_a_queue_is_in_one_slot() -> None:
    qk = Keys("app").queue("emails")
    slots = {key_slot(k.encode()) for k in [*qk, qk.job("some-id"), qk.job("{odd}")]}
    assert len(slots) == 1


@pytest.mark.parametrize("bad", ["", "a{b", "a}b"])
def test_names_that_would_break_the_hash_tag_are_refused(bad: str) -> None:
    with pytest.raises(InvalidName):
        Keys("app").queue(bad)
    with pytest.raises(InvalidName):
        Keys(bad)


def test_sort_keys_preserve_order() -> None:
    rng = random.Random(4)
    times = [rng.uniform(-1e10, 1e10) for _ in range(500)] + [0.0, -0.5, 1.7e9, 1.7e9 + 1e-6]
    assert sorted(times, key=time_key) == sorted(times)
    priorities = [rng.randint(-(2**62), 2**62) for _ in range(500)] + [0, 1, -1]
    assert sorted(priorities, key=priority_key) == sorted(priorities, reverse=True)


def test_the_lua_file_ships_in_the_package() -> None:
    source = files("asynctask.brokers.redis").joinpath("asynctask.lua").read_text()
    assert "commands.claim = " in source


async def _open(prefix: str, clock: FakeClock) -> tuple[RedisBroker, Redis]:
    broker = broker_for(prefix, clock=clock)
    await broker.open()
    return broker, Redis.from_url(REDIS_URL)


async def test_finished_jobs_get_a_real_ttl_and_retry_clears_it(prefix: str) -> None:
    clock = FakeClock()
    broker, client = await _open(prefix, clock)
    try:
        await broker.enqueue([job("a", clock())])
        [a] = await broker.claim("q", 1, lease=30, worker="w")
        ok = Outcome(job_id="a", token=a.token, kind=OutcomeKind.FAILED, error="x", expires_at=clock() + 60)
        assert await broker.complete([ok]) == [True]
        key = broker.keys.queue("q").job("a")
        assert 60_000 < await client.pttl(key) <= (60 + 3600) * 1000
        await broker.retry("a")
        assert await client.pttl(key) == -1, "a job back in the queue must never vanish"
    finally:
        await client.aclose()
        await broker.close()


async def test_id_is_unique_across_queues(prefix: str) -> None:
    clock = FakeClock()
    broker, client = await _open(prefix, clock)
    try:
        assert await broker.enqueue([job("a", clock(), queue="q1")]) == [True]
        assert await broker.enqueue([job("a", clock(), queue="q2")]) == [False]
        assert await broker.claim("q2", 10, lease=30, worker="w") == []
        # Once the first has expired, the id is free again, in any queue.
        [a] = await broker.claim("q1", 10, lease=30, worker="w")
        done = Outcome(job_id="a", token=a.token, kind=OutcomeKind.SUCCEEDED, expires_at=clock() + 5)
        await broker.complete([done])
        clock.advance(6)
        assert await broker.enqueue([job("a", clock(), queue="q2")]) == [True]
        again = await broker.get("a")
        assert again is not None and again.queue == "q2" and again.status is JobStatus.QUEUED
    finally:
        await client.aclose()
        await broker.close()


async def test_prune_cleans_every_index(prefix: str) -> None:
    clock = FakeClock()
    broker, client = await _open(prefix, clock)
    try:
        await broker.enqueue([job(f"j{i}", clock()) for i in range(5)])
        claimed = await broker.claim("q", 10, lease=30, worker="w")
        outcomes = [
            Outcome(job_id=j.id, token=j.token, kind=OutcomeKind.SUCCEEDED, expires_at=clock() + 1)
            for j in claimed
        ]
        await broker.complete(outcomes)
        clock.advance(2)
        assert await broker.prune(100) == 5
        qk = broker.keys.queue("q")
        for key in (qk.ready, qk.scheduled, qk.leased, qk.finished, qk.all):
            assert await client.zcard(key) == 0, key
        assert await client.hlen(broker.keys.ids) == 0
    finally:
        await client.aclose()
        await broker.close()


async def test_enqueue_replaces_an_expired_job_in_the_same_queue(prefix: str) -> None:
    clock = FakeClock()
    broker, client = await _open(prefix, clock)
    try:
        await broker.enqueue([job("a", clock(), payload=b"old")])
        [a] = await broker.claim("q", 1, lease=30, worker="w")
        await broker.complete(
            [Outcome(job_id="a", token=a.token, kind=OutcomeKind.SUCCEEDED, expires_at=clock() + 1)]
        )
        clock.advance(2)
        assert await broker.enqueue([job("a", clock(), payload=b"new")]) == [True]
        [again] = await broker.claim("q", 1, lease=30, worker="w")
        assert again.payload == b"new" and again.attempts == 1
        qk = broker.keys.queue("q")
        assert await client.zcard(qk.created) == 1
        assert await client.zcard(qk.all) == 0  # (legacy: new jobs no longer enter it)
    finally:
        await client.aclose()
        await broker.close()


async def test_batches_past_luas_unpack_limit_and_arbitrary_bytes_round_trip(prefix: str) -> None:
    """Jobs and outcomes travel packed (msgpack), and the scripts write index entries in
    chunks: a batch larger than Lua's ``unpack`` limit (about 8,000 values), and payloads,
    results and meta of any bytes (not UTF-8, empty, longer than 64 KiB), come through whole."""
    clock = FakeClock()
    broker, client = await _open(prefix, clock)
    odd = [bytes(range(256)), b"", b"\xff" * 70_000, "é".encode()]
    try:
        jobs = [job(f"j{i:05}", clock()) for i in range(9_000)]
        jobs[:8] = [job(f"j{i:05}", clock(), payload=odd[i % 4], meta=odd[(i + 1) % 4]) for i in range(8)]
        assert await broker.enqueue(jobs) == [True] * 9_000
        claimed = await broker.claim("q", 9_000, lease=30, worker="w")
        assert [j.id for j in claimed] == [j.id for j in jobs]
        assert [(j.payload, j.meta) for j in claimed] == [(j.payload, j.meta) for j in jobs]
        succeeded = OutcomeKind.SUCCEEDED
        outcomes = [
            Outcome(job_id=j.id, token=j.token, kind=succeeded, result=odd[i % 4], meta=odd[i % 3])
            for i, j in enumerate(claimed[:20])
        ]
        assert await broker.complete(outcomes) == [True] * 20
        for i, o in enumerate(outcomes):
            done = await broker.get(o.job_id)
            assert done is not None
            assert (done.status, done.result, done.meta) == (JobStatus.SUCCEEDED, odd[i % 4], odd[i % 3])
    finally:
        await client.aclose()
        await broker.close()


async def test_a_claim_returns_the_record_as_stored(prefix: str) -> None:
    # The claim builds its reply from the fields it read and wrote (no second read): it must
    # match what a reader of the stored record (HGETALL) gets, optional fields included.
    clock = FakeClock()
    broker, client = await _open(prefix, clock)
    try:
        extras = {"timeout": 2.5, "meta": b"m\xff", "headers": {"h": "v"}, "unique_key": "u1", "priority": 3}
        await broker.enqueue([job("a", clock(), **extras), job("b", clock())])
        claimed = await broker.claim("q", 10, lease=30, worker="w")
        assert [j.id for j in claimed] == ["a", "b"]
        for j in claimed:
            assert j == await broker.get(j.id)
        assert claimed[0].headers == {"h": "v"} and claimed[0].meta == b"m\xff" and claimed[0].attempts == 1
    finally:
        await client.aclose()
        await broker.close()
