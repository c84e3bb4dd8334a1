"""The Postgres broker for the shared suites: a fresh schema per broker, dropped afterwards.

``ASYNCTASK_TEST_POSTGRES_URL`` points the tests at another server (default: the local
``test`` database with trust auth).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from asynctask.brokers import Broker
from asynctask.brokers.base import Clock
from asynctask.brokers.postgres import PostgresBroker
from asynctask.brokers.postgres.sql import validate_schema

URL = os.environ.get("ASYNCTASK_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


def fresh_schema() -> str:
    return f"t_{uuid.uuid4().hex}"


async def drop_schema(schema: str) -> None:
    conn = await asyncpg.connect(URL)
    try:
        # An identifier cannot be a parameter: validate it, then quote it.
        await conn.execute(f'DROP SCHEMA IF EXISTS "{validate_schema(schema)}" CASCADE')
    finally:
        await conn.close()


@asynccontextmanager
async def postgres_broker(clock: Clock, **options: Any) -> AsyncIterator[PostgresBroker]:
    """An opened broker on a fresh, migrated schema; ``options`` go to ``PostgresBroker``."""
    schema = options.pop("schema", None) or fresh_schema()
    broker = PostgresBroker(URL, schema=schema, clock=clock, **options)
    try:
        await broker.migrate()
        await broker.open()
        try:
            yield broker
        finally:
            await broker.close()
            leaked = broker.is_open
            while broker.is_open:  # release the connections anyway, then say why
                await broker.close()
            assert not leaked, "the broker was opened more often than closed (a close() that never ran?)"
    finally:
        await drop_schema(schema)


@asynccontextmanager
async def factory(clock: Clock) -> AsyncIterator[Broker]:
    async with postgres_broker(clock) as broker:
        yield broker
