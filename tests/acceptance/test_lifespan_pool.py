"""A CLI worker whose lifespan opens a real asyncpg pool: 1,000 jobs each use it, and SIGTERM closes it.

The issue's check, as a user would deploy it: ``asynctask worker`` on PostgreSQL, the app's
``@app.lifespan`` opening ``asyncpg.create_pool``, every handler writing through
``ctx.resources_as(Resources).pool``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import anyio
import asyncpg
import pytest

from asynctask import App, JobStatus
from tests.backend_postgres import URL as POSTGRES_URL
from tests.backend_postgres import drop_schema

APP_MODULE = textwrap.dedent(
    """
    import dataclasses
    import os
    from collections.abc import AsyncIterator

    import asyncpg
    from asynctask import App, JobCtx

    app = App()
    HITS = os.environ["HITS_TABLE"]  # a quoted, per-test "schema".hits

    @dataclasses.dataclass
    class Resources:
        pool: asyncpg.Pool

    @app.lifespan
    async def resources() -> AsyncIterator[Resources]:
        pool = await asyncpg.create_pool(
            os.environ["DATABASE_URL"],
            min_size=2,
            max_size=8,
            server_settings={"application_name": os.environ["POOL_NAME"]},
        )
        try:
            yield Resources(pool)
        finally:
            hits = await pool.fetchval(f"SELECT count(*) FROM {HITS}")
            await pool.close()
            with open(os.environ["POOL_LOG"], "w") as f:
                f.write(f"closed after {hits} hits, is_closing={pool.is_closing()}\\n")

    @app.task
    async def hit(ctx: JobCtx, n: int) -> int:
        pool = ctx.resources_as(Resources).pool
        return await pool.fetchval(f"INSERT INTO {HITS} (n) VALUES ($1) RETURNING n", n)
    """
)

JOBS = 1000


@pytest.fixture
def schema() -> Iterator[str]:
    name = f"t_{uuid.uuid4().hex}"
    try:
        yield name
    finally:
        anyio.run(drop_schema, name)


async def _sql(query: str, *args: object) -> object:
    conn = await asyncpg.connect(POSTGRES_URL)
    try:
        return await conn.fetchval(query, *args)
    finally:
        await conn.close()


def sql(query: str, *args: object) -> object:
    return anyio.run(_sql, query, *args)


@pytest.mark.slow
def test_a_lifespan_pool_serves_1000_jobs_and_is_closed_after_sigterm(tmp_path: Path, schema: str) -> None:
    (tmp_path / "poolapp.py").write_text(APP_MODULE)
    url = f"{POSTGRES_URL}?schema={schema}"
    hits = f'"{schema}".hits'
    pool_name = f"asynctask-test-{uuid.uuid4().hex[:12]}"
    migrated = subprocess.run(
        [sys.executable, "-m", "asynctask", "migrate", "--broker", url], capture_output=True
    )
    assert migrated.returncode == 0, migrated.stderr
    sql(f"CREATE TABLE {hits} (n int PRIMARY KEY)")

    sys.path.insert(0, str(tmp_path))
    os.environ["HITS_TABLE"] = hits  # read when poolapp is imported here, to publish
    try:
        import poolapp  # type: ignore[import-not-found]

        app: App = poolapp.app
        app.set_broker(url)

        async def publish() -> None:
            async with app:
                await app.publish_many([app.tasks["hit"].spec(n) for n in range(JOBS)])

        anyio.run(publish)
    finally:
        sys.path.pop(0)
        sys.modules.pop("poolapp", None)
        del os.environ["HITS_TABLE"]

    env = {k: v for k, v in os.environ.items() if not k.startswith("ASYNCTASK_") or "_TEST_" in k}
    env |= {
        "DATABASE_URL": POSTGRES_URL,
        "HITS_TABLE": hits,
        "POOL_NAME": pool_name,
        "POOL_LOG": str(tmp_path / "pool.log"),
    }
    errors = tmp_path / "worker.err"
    started = time.monotonic()
    with errors.open("w") as err_file:
        worker = subprocess.Popen(
            [sys.executable, "-m", "asynctask", "worker", "poolapp:app", "--broker", url, "-c", "20"],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=err_file,
        )
        try:
            deadline = time.monotonic() + 90
            while sql(f"SELECT count(*) FROM {hits}") != JOBS:
                assert time.monotonic() < deadline, errors.read_text()[-3000:]
                assert worker.poll() is None, errors.read_text()[-3000:]
                time.sleep(0.1)
            ran_for = time.monotonic() - started
            pooled = sql("SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", pool_name)
            assert isinstance(pooled, int) and 2 <= pooled <= 8, "the pool is open while the worker runs"
            assert not (tmp_path / "pool.log").exists()
            worker.send_signal(signal.SIGTERM)
            worker.wait(timeout=60)
        finally:
            worker.kill()
    assert worker.returncode == 0, errors.read_text()[-3000:]
    assert (tmp_path / "pool.log").read_text() == f"closed after {JOBS} hits, is_closing=True\n"
    deadline = time.monotonic() + 10
    while sql("SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", pool_name) != 0:
        assert time.monotonic() < deadline, "the pool's connections are gone"
        time.sleep(0.05)

    async def statuses() -> set[JobStatus]:
        async with App(url) as client:
            return {job.status for job in await client.list_jobs(limit=JOBS + 1)}

    assert anyio.run(statuses) == {JobStatus.SUCCEEDED}
    text = errors.read_text()
    assert "SIGTERM: shutting down gracefully" in text and "'succeeded': 1000" in text
    print(f"1000 jobs through the lifespan pool in {ran_for:.1f}s")
