"""Transactional publish on MongoDB: jobs published in a session's transaction exist iff it commits."""

from __future__ import annotations

import pytest

from asynctask import App, JobCtx
from asynctask.brokers.mongo import MongoBroker
from asynctask.errors import ConfigurationError
from asynctask.testing import FakeClock
from tests.backend_mongo import mongo_broker
from tests.mongo.helpers import job

pytestmark = pytest.mark.anyio


class Rollback(Exception):
    pass


@pytest.fixture
async def tx(clock: FakeClock):  # type: ignore[no-untyped-def]
    async with mongo_broker(clock) as broker:
        assert broker.transactions, "the test server runs multi-document transactions"
        assert broker.capabilities.transactional_publish
        yield broker


async def test_jobs_published_in_a_transaction_appear_when_it_commits(
    tx: MongoBroker, clock: FakeClock
) -> None:
    orders = tx.client["asynctask_test"][f"{tx.prefix}.orders"]
    async with tx.client.start_session() as session, await session.start_transaction():
        await orders.insert_one({"_id": 1, "total": 30}, session=session)
        assert await tx.enqueue([job("ship-1", clock())], connection=session) == [True]
        assert await tx.get("ship-1") is None, "not visible before the commit"
    found = await tx.get("ship-1")
    assert found is not None and found.payload == b"{}"
    [claimed] = await tx.claim("q", 10, lease=30, worker="w")
    assert claimed.id == "ship-1"


async def test_an_aborted_transaction_publishes_nothing(tx: MongoBroker, clock: FakeClock) -> None:
    async def publish_then_fail() -> None:
        async with tx.client.start_session() as session, await session.start_transaction():
            await tx.enqueue([job("ship-2", clock())], connection=session)
            raise Rollback

    with pytest.raises(Rollback):
        await publish_then_fail()
    assert await tx.get("ship-2") is None
    assert await tx.claim("q", 10, lease=30, worker="w") == []


async def test_app_publish_joins_the_session(tx: MongoBroker, clock: FakeClock) -> None:
    app = App(tx, clock=clock)

    @app.task
    async def ship(ctx: JobCtx, order: int) -> None:
        pass

    async def publish_then_fail() -> None:
        async with tx.client.start_session() as session, await session.start_transaction():
            await ship.publish(7, job_id="rolled-back", connection=session)
            raise Rollback

    async with app:
        with pytest.raises(Rollback):
            await publish_then_fail()
        async with tx.client.start_session() as session, await session.start_transaction():
            handle = await app.publish("ship", 8, job_id="committed", connection=session)
        assert await app.get_job("rolled-back") is None
        assert handle.id == "committed" and await app.get_job("committed") is not None


async def test_an_idempotent_id_in_a_transaction_does_not_abort_it(tx: MongoBroker, clock: FakeClock) -> None:
    await tx.enqueue([job("dup", clock())])
    async with tx.client.start_session() as session, await session.start_transaction():
        assert await tx.enqueue([job("dup", clock()), job("new", clock())], connection=session) == [
            False,
            True,
        ]
    assert await tx.get("new") is not None


async def test_a_session_of_another_client_is_refused(tx: MongoBroker, clock: FakeClock) -> None:
    async with mongo_broker(clock) as other, other.client.start_session() as session:
        with pytest.raises(ConfigurationError, match="AsyncClientSession of the broker's own client"):
            await tx.enqueue([job("x", clock())], connection=session)
    with pytest.raises(ConfigurationError):
        await tx.enqueue([job("x", clock())], connection=object())
