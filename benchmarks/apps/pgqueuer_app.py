"""PgQueuer: ``pgq run benchmarks.apps.pgqueuer_app:create_pgqueuer --max-concurrent-tasks N``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
from pgqueuer import AsyncpgDriver, Job, PgQueuer

from benchmarks.apps import record
from benchmarks.apps.settings import POSTGRES_URL


@asynccontextmanager
async def create_pgqueuer() -> AsyncIterator[PgQueuer]:
    conn = await asyncpg.connect(POSTGRES_URL)
    pgq = PgQueuer(AsyncpgDriver(conn))

    @pgq.entrypoint("noop")
    async def noop(job: Job) -> None:
        record.noop(int(job.payload or b"0"))

    @pgq.entrypoint("sleep")
    async def sleep(job: Job) -> None:
        await record.sleep_job(int(job.payload or b"0"))

    try:
        yield pgq
    finally:
        await conn.close()
