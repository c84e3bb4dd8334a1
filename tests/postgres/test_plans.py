"""The session settings of the broker's own pool: generic plans that stay on the indexes."""

from __future__ import annotations

import pytest

from asynctask.brokers.postgres import PostgresBroker
from asynctask.brokers.postgres.sql import queries
from asynctask.testing import FakeClock
from tests.backend_postgres import URL, postgres_broker
from tests.postgres.conftest import new_job

pytestmark = pytest.mark.anyio


async def _settings(broker: PostgresBroker) -> tuple[str, ...]:
    async with broker._db.connection() as conn:
        names = ("plan_cache_mode", "enable_seqscan", "enable_bitmapscan", "jit")
        return tuple([await conn.fetchval(f"SHOW {name}") for name in names])


async def test_pooled_connections_plan_generically_without_seq_or_bitmap_scans(pg: PostgresBroker) -> None:
    assert await _settings(pg) == ("force_generic_plan", "off", "off", "off")


async def test_a_listing_keeps_the_servers_planner_settings_to_itself(
    pg: PostgresBroker, clock: FakeClock
) -> None:
    await pg.enqueue([new_job(clock, "a")])
    assert [job.id for job in await pg.list_jobs()] == ["a"]
    # SET LOCAL ended with the listing's transaction: the connection is as the pool made it.
    assert await _settings(pg) == ("force_generic_plan", "off", "off", "off")


async def test_without_a_statement_cache_the_server_settings_stay(clock: FakeClock) -> None:
    async with postgres_broker(clock, pool_options={"statement_cache_size": 0}) as broker:
        async with broker._db.connection() as conn:
            jit = await conn.fetchval("SELECT boot_val FROM pg_settings WHERE name = 'jit'")
        assert await _settings(broker) == ("auto", "on", "on", jit)


def test_server_settings_passed_in_replace_the_brokers() -> None:
    broker = PostgresBroker(URL, pool_options={"server_settings": {"application_name": "mine"}})
    assert broker._pool_options["server_settings"] == {"application_name": "mine"}


async def test_a_claim_walks_the_ready_index_even_when_its_statistics_say_empty(
    pg: PostgresBroker, clock: FakeClock
) -> None:
    # The migration built jobs_ready_idx on an empty table: its statistics say "no rows" until
    # the first ANALYZE. A generic plan made then once chose a bitmap scan of the whole ready set
    # and a sort of it, at every claim (a backlog of 100,000 jobs drained at about 2,100 jobs/s
    # instead of 30,000). With bitmap scans off the claim walks the index in claim order.
    await pg.enqueue([new_job(clock, f"j{n}") for n in range(2000)])
    claim = queries(pg.schema)["claim"]
    async with pg._db.connection() as conn:
        await conn.execute(f"PREPARE claim_plan(text, int, float8, float8, text, text[]) AS {claim}")
        try:
            rows = await conn.fetch(f"EXPLAIN EXECUTE claim_plan('q', 10, {clock()!r}, 30, 'w', '{{}}')")
        finally:
            await conn.execute("DEALLOCATE claim_plan")
    plan = "\n".join(row[0] for row in rows)
    assert "Index Scan using jobs_ready_idx" in plan, plan
    assert "Bitmap" not in plan and "Sort Key: jobs.priority" not in plan, plan
