"""The session settings of the broker's own pool: generic plans that stay on the indexes."""

from __future__ import annotations

import pytest

from asynctask.brokers.postgres import PostgresBroker
from asynctask.testing import FakeClock
from tests.backend_postgres import URL, postgres_broker
from tests.postgres.conftest import new_job

pytestmark = pytest.mark.anyio


async def _settings(broker: PostgresBroker) -> tuple[str, ...]:
    async with broker._db.connection() as conn:
        names = ("plan_cache_mode", "enable_seqscan", "jit")
        return tuple([await conn.fetchval(f"SHOW {name}") for name in names])


async def test_pooled_connections_plan_generically_without_seqscans_or_jit(pg: PostgresBroker) -> None:
    assert await _settings(pg) == ("force_generic_plan", "off", "off")


async def test_a_listing_keeps_the_servers_planner_settings_to_itself(
    pg: PostgresBroker, clock: FakeClock
) -> None:
    await pg.enqueue([new_job(clock, "a")])
    assert [job.id for job in await pg.list_jobs()] == ["a"]
    # SET LOCAL ended with the listing's transaction: the connection is as the pool made it.
    assert await _settings(pg) == ("force_generic_plan", "off", "off")


async def test_without_a_statement_cache_the_server_settings_stay(clock: FakeClock) -> None:
    async with postgres_broker(clock, pool_options={"statement_cache_size": 0}) as broker:
        async with broker._db.connection() as conn:
            jit = await conn.fetchval("SELECT boot_val FROM pg_settings WHERE name = 'jit'")
        assert await _settings(broker) == ("auto", "on", jit)


def test_server_settings_passed_in_replace_the_brokers() -> None:
    broker = PostgresBroker(URL, pool_options={"server_settings": {"application_name": "mine"}})
    assert broker._pool_options["server_settings"] == {"application_name": "mine"}
