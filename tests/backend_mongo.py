"""The MongoDB broker for the shared suites, twice: with transactions, and forced without.

Each broker gets a fresh collection prefix in the ``asynctask_test`` database, dropped
afterwards. The server is ``ASYNCTASK_TEST_MONGO_URL`` or this process's mongoeco server (see
``tests/mongo/server.py``). The TTL index fires an hour after expiry (``ttl_margin``), so it never
races a test's fake clock.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from pymongo import AsyncMongoClient

from asynctask.brokers import Broker
from asynctask.brokers.base import Clock
from asynctask.brokers.mongo import MongoBroker
from tests.mongo import server

DATABASE = "asynctask_test"


def fresh_prefix() -> str:
    return f"t{uuid.uuid4().hex[:16]}"


async def drop_prefix(prefix: str) -> None:
    client: AsyncMongoClient[Any] = AsyncMongoClient(server.url())
    try:
        db = client[DATABASE]
        for name in await db.list_collection_names():
            if name.startswith(f"{prefix}."):
                await db.drop_collection(name)
    finally:
        await client.close()


@asynccontextmanager
async def mongo_broker(clock: Clock, **options: Any) -> AsyncIterator[MongoBroker]:
    """An opened broker on a fresh prefix; ``options`` go to ``MongoBroker``."""
    prefix = options.pop("prefix", None) or fresh_prefix()
    options.setdefault("ttl_margin", 3600.0)
    broker = MongoBroker(server.url(), database=DATABASE, prefix=prefix, clock=clock, **options)
    try:
        await broker.open()
        try:
            yield broker
        finally:
            await broker.close()
            leaked = broker.is_open
            while broker.is_open:
                await broker.close()
            assert not leaked, "the broker was opened more often than closed"
    finally:
        await drop_prefix(prefix)


@asynccontextmanager
async def factory(clock: Clock) -> AsyncIterator[Broker]:
    async with mongo_broker(clock) as broker:
        yield broker


@asynccontextmanager
async def factory_notx(clock: Clock) -> AsyncIterator[Broker]:
    async with mongo_broker(clock, transactions=False) as broker:
        yield broker


# Not tests.backends.BrokerFactory: that module imports this one.
FACTORIES: dict[str, Callable[[Clock], AbstractAsyncContextManager[Broker]]] = {
    "mongo": factory,
    "mongo-notx": factory_notx,
}
