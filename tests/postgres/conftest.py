from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from asynctask.brokers.postgres import PostgresBroker
from asynctask.models import NewJob
from asynctask.testing import FakeClock
from tests.backend_postgres import URL, postgres_broker


@pytest.fixture
async def pg(clock: FakeClock) -> AsyncIterator[PostgresBroker]:
    """An opened Postgres broker on a fresh schema."""
    async with postgres_broker(clock) as broker:
        yield broker


@pytest.fixture
async def admin() -> AsyncIterator[Any]:
    """A plain asyncpg connection to the test database."""
    conn = await asyncpg.connect(URL)
    try:
        yield conn
    finally:
        await conn.close()


def new_job(clock: FakeClock, job_id: str, **kw: Any) -> NewJob:
    fields: dict[str, Any] = {"id": job_id, "task": "t", "queue": "q", "payload": b"{}", "run_at": clock()}
    fields.update(kw)
    return NewJob(**fields)
