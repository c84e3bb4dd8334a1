"""Publishing: inside the caller's transaction, in bulk, and over expired records."""

from __future__ import annotations

from typing import Any

import anyio
import asyncpg
import pytest

from asynctask.brokers.postgres import PostgresBroker
from asynctask.models import JobStatus, Outcome, OutcomeKind
from asynctask.testing import FakeClock, wait_until
from tests.backend_postgres import URL
from tests.postgres.conftest import new_job

pytestmark = pytest.mark.anyio


class Rollback(Exception):
    pass


async def test_jobs_published_in_a_committed_transaction_exist(
    pg: PostgresBroker, admin: Any, clock: FakeClock
) -> None:
    async with admin.transaction():
        await admin.execute("SELECT 1")  # the caller's own work would go here
        assert await pg.enqueue([new_job(clock, "a"), new_job(clock, "b")], connection=admin) == [True, True]
        assert await pg.get("a") is None, "not visible before the caller commits"
    job = await pg.get("a")
    assert job is not None and job.status is JobStatus.QUEUED
    assert len(await pg.claim("q", 10, lease=30, worker="w")) == 2


async def test_jobs_published_in_a_rolled_back_transaction_do_not(
    pg: PostgresBroker, admin: Any, clock: FakeClock
) -> None:
    created: list[bool] = []

    async def publish_then_fail() -> None:
        async with admin.transaction():
            created.extend(await pg.enqueue([new_job(clock, "a")], connection=admin))
            raise Rollback

    with pytest.raises(Rollback):
        await publish_then_fail()
    assert created == [True]
    assert await pg.get("a") is None
    assert await pg.claim("q", 10, lease=30, worker="w") == []
    # The id was never taken: publishing it again creates it.
    assert await pg.enqueue([new_job(clock, "a")]) == [True]


async def test_a_transactional_publish_wakes_waiters_on_commit(
    pg: PostgresBroker, admin: Any, clock: FakeClock
) -> None:
    woke = anyio.Event()

    async def wait() -> None:
        await pg.wait_for_jobs("q", timeout=60)
        woke.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(wait)

        async def registered() -> bool:
            return "q" in pg.listener.waiting

        await wait_until(registered, timeout=5)
        async with admin.transaction():
            await pg.enqueue([new_job(clock, "a")], connection=admin)
            # NOTIFY is held back until commit; this window only catches a broken server.
            with anyio.move_on_after(0.2):
                await woke.wait()
            assert not woke.is_set()
        with anyio.fail_after(5):
            await woke.wait()


async def test_bulk_enqueue_of_ten_thousand_jobs(pg: PostgresBroker, clock: FakeClock) -> None:
    jobs = [new_job(clock, f"bulk-{i:05d}", priority=i % 3) for i in range(10_000)]
    assert await pg.enqueue(jobs) == [True] * 10_000
    # Again, interleaved with new ids: only the new ones are created, answers in input order.
    again = [new_job(clock, f"bulk-{i:05d}") if i % 2 else new_job(clock, f"new-{i}") for i in range(1000)]
    assert await pg.enqueue(again) == [i % 2 == 0 for i in range(1000)]
    claimed = await pg.claim("q", 20_000, lease=30, worker="w")
    assert len(claimed) == 10_500
    assert [j.priority for j in claimed[:3334]] == [2] * 3333 + [1]


async def test_an_expired_record_is_replaced_by_a_new_publish(pg: PostgresBroker, clock: FakeClock) -> None:
    await pg.enqueue([new_job(clock, "a", payload=b'"old"')])
    [job] = await pg.claim("q", 1, lease=30, worker="w")
    await pg.save("a", job.token, state=b'"cursor"')
    await pg.complete(
        [Outcome(job_id="a", token=job.token, kind=OutcomeKind.FAILED, error="x", expires_at=clock() + 10)]
    )
    assert await pg.enqueue([new_job(clock, "a", payload=b'"new"')]) == [False]
    clock.advance(11)
    assert await pg.enqueue([new_job(clock, "a", payload=b'"new"')]) == [True]
    fresh = await pg.get("a")
    assert fresh is not None
    assert (fresh.status, fresh.payload, fresh.attempts) == (JobStatus.QUEUED, b'"new"', 0)
    assert (fresh.error, fresh.state, fresh.result, fresh.expires_at, fresh.finished_at) == (None,) * 5
    assert fresh.created_at == pytest.approx(clock())
    # The fencing token never goes back, so the old owner's token cannot match the new job.
    [again] = await pg.claim("q", 1, lease=30, worker="w")
    assert again.token > job.token


async def test_enqueue_on_a_broker_built_around_a_pool(
    admin: Any, clock: FakeClock, pg: PostgresBroker
) -> None:
    pool = await asyncpg.create_pool(URL, min_size=1, max_size=2)
    try:
        broker = PostgresBroker(pool=pool, schema=pg.schema, notify=False, clock=clock)
        await broker.open()
        assert await broker.enqueue([new_job(clock, "p")]) == [True]
        await broker.close()
        assert await pool.fetchval("SELECT 1") == 1, "a pool passed in stays open"
        with_url = PostgresBroker(URL, pool=pool, schema=pg.schema, clock=clock)
        await with_url.open()
        assert not with_url.listener.connected, "opened by the first wait, not by open()"
        assert await with_url.listener.ensure()
        await with_url.close()
    finally:
        await pool.close()
    assert (await pg.get("p")) is not None


async def test_app_publish_joins_the_callers_transaction(
    pg: PostgresBroker, admin: Any, clock: FakeClock
) -> None:
    from asynctask import App, JobCtx

    app = App(pg, clock=clock)

    @app.task
    async def receipt(ctx: JobCtx, order_id: int) -> None:
        return None

    dropped: list[str] = []

    async def publish_then_fail() -> None:
        async with admin.transaction():
            dropped.append((await receipt.publish(2, connection=admin)).id)
            raise Rollback

    async with app:
        async with admin.transaction():
            kept = await receipt.publish(1, connection=admin)
        with pytest.raises(Rollback):
            await publish_then_fail()
        assert await app.get_job(kept.id) is not None
        assert await app.get_job(dropped[0]) is None


async def test_columns_left_at_their_defaults_and_mixed_columns_both_round_trip(
    pg: PostgresBroker, clock: FakeClock
) -> None:
    # A column that holds nothing in a batch travels as one NULL (publishing.enqueue_columns); a
    # column set on some jobs only travels whole. Each job reads back as it was published.
    plain = [new_job(clock, f"plain-{i}") for i in range(3)]
    mixed = [
        new_job(clock, "m0"),
        new_job(
            clock, "m1", priority=-2, max_retries=4, timeout=1.5, meta=b"", unique_key="k", headers={"h": "v"}
        ),
        new_job(clock, "m2", parent_id="plain-0", pending=2, meta=b"x", priority=3),
    ]
    assert await pg.enqueue(plain) == [True] * 3
    assert await pg.enqueue(mixed) == [True] * 3
    fields = ("priority", "max_retries", "timeout", "parent_id", "pending", "meta", "unique_key", "headers")
    for sent in [*plain, *mixed]:
        got = await pg.get(sent.id)
        assert got is not None
        assert {f: getattr(got, f) for f in fields} == {f: getattr(sent, f) for f in fields}
    waiting = await pg.get("m2")
    assert waiting is not None and waiting.status is JobStatus.WAITING


def test_the_single_and_the_batch_statement_share_one_conflict_rule() -> None:
    from asynctask.brokers.postgres.sql import queries

    q = queries("asynctask")

    def clause(text: str) -> str:
        return text[text.index("ON CONFLICT (id)") : text.index("RETURNING")]

    assert "WHERE j.expires_at <=" in clause(q["enqueue"])
    assert clause(q["enqueue_one"]) == clause(q["enqueue"])
    # The batch of new ids a plain insert: the batch statement without the clause, nothing else.
    assert "ON CONFLICT (id)" not in q["enqueue_fresh"]
    assert q["enqueue"].replace(clause(q["enqueue"]), "") == q["enqueue_fresh"]


async def test_a_batch_repeating_a_live_id_inside_the_callers_transaction_keeps_it_usable(
    pg: PostgresBroker, admin: Any, clock: FakeClock
) -> None:
    await pg.enqueue([new_job(clock, "old", payload=b'"first"')])
    async with admin.transaction():
        created = await pg.enqueue([new_job(clock, "old"), new_job(clock, "new")], connection=admin)
        assert created == [False, True]
        assert await admin.fetchval("SELECT 1") == 1, "the transaction is not aborted"
    old = await pg.get("old")
    assert old is not None and old.payload == b'"first"'
    assert await pg.get("new") is not None


@pytest.mark.parametrize("batch", [False, True], ids=["enqueue_one", "enqueue"])
async def test_one_job_alone_or_in_a_batch_is_published_alike(
    pg: PostgresBroker, clock: FakeClock, batch: bool
) -> None:
    async def publish(job: Any) -> bool:
        # In a batch the job comes second, after a filler job that is always new.
        if not batch:
            [created] = await pg.enqueue([job])
            return created
        filler = new_job(clock, f"filler-{job.id}-{clock()}")
        return (await pg.enqueue([filler, job]))[1]

    assert await publish(new_job(clock, "a", headers={"k": "v"}, timeout=2.0, max_retries=1))
    assert not await publish(new_job(clock, "a")), "a live id is not created again"
    assert await publish(new_job(clock, "later", run_at=clock() + 60))
    assert await publish(new_job(clock, "parent", pending=1))
    assert await publish(new_job(clock, "u1", unique_key="key"))
    assert not await publish(new_job(clock, "u2", unique_key="key")), "a live unique key keeps it out"
    statuses = {i: (await pg.get(i)) for i in ("a", "later", "parent", "u1", "u2")}
    assert {i: j.status if j else None for i, j in statuses.items()} == {
        "a": JobStatus.QUEUED,
        "later": JobStatus.SCHEDULED,
        "parent": JobStatus.WAITING,
        "u1": JobStatus.QUEUED,
        "u2": None,
    }
    a = statuses["a"]
    assert a is not None and (a.headers, a.timeout, a.max_retries) == ({"k": "v"}, 2.0, 1)
    [claimed, *_] = await pg.claim("q", 10, lease=30, worker="w")
    await pg.complete(
        [Outcome(job_id=claimed.id, token=claimed.token, kind=OutcomeKind.SUCCEEDED, expires_at=clock() + 1)]
    )
    clock.advance(2)
    assert await publish(new_job(clock, claimed.id)), "an expired record is replaced"
