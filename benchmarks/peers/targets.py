"""The brokers asynctask is benchmarked on: the URL of a run's own namespace, and how to wipe it.

Adding a broker is one entry here and one line in :data:`benchmarks.systems.SYSTEMS`
(``ours("nats")``). NATS: a bucket prefix per run (``?prefix=``), its streams deleted after;
the server is ``BENCH_NATS_URL``, or the one ``python -m benchmarks`` starts
(:mod:`benchmarks.nats_server`). MongoDB: a database per run, dropped after.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from benchmarks import services

__all__ = ["TARGETS", "Target"]

MONGO_URL = os.environ.get("BENCH_MONGO_URL", "mongodb://127.0.0.1:27017")


@dataclass(frozen=True)
class Target:
    #: namespace -> the broker URL of a run (its own key prefix, schema, database or bucket).
    url: Callable[[str], str]
    #: Remove everything the run left under its namespace.
    wipe: Callable[[str], Awaitable[None]]


async def _wipe_redis(namespace: str) -> None:
    await services.redis_delete_matching(f"{namespace}:*")


async def _wipe_postgres(namespace: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(services.POSTGRES_URL)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{namespace}" CASCADE')
    finally:
        await conn.close()


def _mongo_url(database: str) -> str:
    """``BENCH_MONGO_URL`` with the run's database as its path (its query options kept)."""
    parts = urlsplit(MONGO_URL)
    return urlunsplit(parts._replace(path=f"/{database}"))


async def _wipe_mongo(namespace: str) -> None:
    from pymongo import AsyncMongoClient

    client: Any = AsyncMongoClient(MONGO_URL)
    try:
        await client.drop_database(namespace)
    finally:
        await client.close()


async def _wipe_nats(namespace: str) -> None:
    import nats

    client = await nats.connect(services.NATS_URL)
    try:
        js = client.jetstream()
        # The broker's bucket is <prefix>_jobs (stream KV_<prefix>_jobs); drop every stream it made.
        for info in await js.streams_info():
            name = info.config.name
            if name and namespace in name:
                await js.delete_stream(name)
    finally:
        await client.close()


TARGETS: dict[str, Target] = {
    "redis": Target(lambda ns: f"{services.REDIS_URL}?prefix={ns}", _wipe_redis),
    "postgres": Target(lambda ns: f"{services.POSTGRES_URL}?schema={ns}&auto_migrate=true", _wipe_postgres),
    "mongo": Target(lambda ns: _mongo_url(ns), _wipe_mongo),
    "nats": Target(lambda ns: f"{services.NATS_URL}?prefix={ns}", _wipe_nats),
}
