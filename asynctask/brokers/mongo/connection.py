"""Connecting: the client, and what the server can do (transactions, change streams).

Both are probed once per open, unless the configuration says: a standalone ``mongod`` has
neither, a replica set or a sharded cluster has both. The probes ask the server instead of
guessing from its topology, so a server that answers like MongoDB but supports less (or more)
is used for what it does.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from pymongo import AsyncMongoClient
from pymongo.errors import OperationFailure, PyMongoError

__all__ = ["CLIENT_DEFAULTS", "make_client", "supports_change_streams", "supports_transactions"]

logger = logging.getLogger("asynctask.brokers.mongo")

#: Options the broker sets on a client it creates, unless the URL sets them. A broker that
#: cannot reach its server says so within 10 s instead of PyMongo's default 30 s.
CLIENT_DEFAULTS: dict[str, Any] = {"serverSelectionTimeoutMS": 10_000, "appname": "asynctask"}

# IllegalOperation: "Transaction numbers are only allowed on a replica set member or mongos".
_NO_TRANSACTIONS = frozenset({20})


def make_client(uri: str) -> AsyncMongoClient[Any]:
    """A client for ``uri`` (connecting lazily, on first use)."""
    given = {key.lower() for key, _ in parse_qsl(urlsplit(uri).query)}
    options = {k: v for k, v in CLIENT_DEFAULTS.items() if k.lower() not in given}
    return AsyncMongoClient(uri, **options)


async def supports_transactions(client: Any, coll: Any) -> bool:
    """Whether a multi-document transaction runs on this server (a read inside one)."""

    async def probe(session: Any) -> None:
        await coll.find_one({"_id": "\x00probe"}, session=session)

    try:
        async with client.start_session() as session:
            await session.with_transaction(probe)
    except OperationFailure as exc:
        if exc.code in _NO_TRANSACTIONS or "transaction" in str(exc).lower():
            return False
        raise
    except PyMongoError as exc:
        if "transaction" in str(exc).lower():
            return False
        raise
    return True


async def supports_change_streams(client: Any, coll: Any) -> bool:
    """Whether the server is a replica set or mongos that opens a change stream on ``coll``."""
    hello = await client.admin.command("hello")
    if not hello.get("setName") and hello.get("msg") != "isdbgrid":
        return False
    try:
        async with await coll.watch([{"$match": {"operationType": "insert"}}], max_await_time_ms=1):
            pass
    except OperationFailure as exc:
        logger.info(
            "change streams are not available (%s); idle workers will poll",
            exc,
            extra={"action": "mongo_change_streams_unavailable"},
        )
        return False
    return True
