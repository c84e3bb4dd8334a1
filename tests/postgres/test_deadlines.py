"""Every round trip has a deadline: a connection that stops answering is abandoned and replaced
(issue #11, item 6)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import anyio
import pytest

from asynctask.brokers.postgres import PostgresBroker
from asynctask.errors import BrokerUnavailable, ConfigurationError
from asynctask.testing import FakeClock, wait_until
from tests.backend_postgres import URL, drop_schema, fresh_schema, postgres_broker
from tests.postgres.conftest import new_job
from tests.proxy import Proxy
from tests.stalled_worker import GRACE, TIMEOUT, check_worker_recovers, check_worker_stops_while_stalled

pytestmark = pytest.mark.anyio


def through(proxy: Proxy, schema: str, query: str = "") -> str:
    parts = urlsplit(URL)
    return f"postgresql://{parts.username}@127.0.0.1:{proxy.port}{parts.path}?schema={schema}{query}"


@pytest.fixture
def proxy() -> Iterator[Proxy]:
    parts = urlsplit(URL)
    with Proxy(parts.hostname or "127.0.0.1", parts.port or 5432) as proxy:
        yield proxy


def test_command_timeout_from_url_and_keyword() -> None:
    assert PostgresBroker("postgresql://h/db").command_timeout == 30.0
    assert PostgresBroker("postgresql://h/db?command_timeout=2.5").command_timeout == 2.5
    broker = PostgresBroker.from_url("postgresql://h/db?command_timeout=2.5", command_timeout=4)
    assert broker.command_timeout == 4
    for bad in ("0", "-1", "nan", "soon"):
        with pytest.raises(ConfigurationError, match="command_timeout"):
            PostgresBroker(f"postgresql://h/db?command_timeout={bad}")


async def test_a_stalled_statement_fails_by_its_deadline_and_the_next_one_works(proxy: Proxy) -> None:
    clock = FakeClock()
    schema = fresh_schema()
    broker = PostgresBroker(through(proxy, schema, "&notify=false&command_timeout=0.5"), clock=clock)
    try:
        await broker.migrate()
        await broker.open()
        await broker.enqueue([new_job(clock, "a")])
        proxy.stall()
        started = time.monotonic()
        with anyio.fail_after(10), pytest.raises(BrokerUnavailable, match="no answer in time"):
            await broker.get("a")
        # The statement deadline, then at most the release deadline for the stuck connection.
        assert time.monotonic() - started < 5
        with anyio.fail_after(10):
            job = await broker.get("a")
        assert job is not None and job.id == "a"
    finally:
        with anyio.fail_after(15):
            await broker.close()
        await drop_schema(schema)


async def test_a_worker_whose_connection_stalls_is_back_at_work(proxy: Proxy) -> None:
    clock = time.time
    async with postgres_broker(clock) as direct:
        proxied = PostgresBroker(through(proxy, direct.schema), clock=clock)
        await check_worker_recovers(proxied, direct, proxy, bound=15)


async def test_a_server_restart_logs_no_driver_traceback(
    proxy: Proxy, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()
    schema = fresh_schema()
    broker = PostgresBroker(through(proxy, schema, "&notify=false"), clock=clock)
    try:
        await broker.migrate()
        await broker.open()
        proxy.cut()  # every connection closes, and new ones are refused: the server is down
        for _ in range(3):
            with pytest.raises(BrokerUnavailable):
                await broker.get("a")
            await anyio.sleep(0.5)
        proxy.down = False
        await wait_until(lambda: _answers(broker), timeout=10)
    finally:
        with anyio.fail_after(15):
            await broker.close()
        await drop_schema(schema)
    driver = [r for r in caplog.records if r.name.startswith("asyncpg")]
    assert not [r for r in driver if r.exc_info], "a driver record printed a traceback"
    for record in driver:
        assert "\n" not in record.getMessage()


async def _answers(broker: PostgresBroker) -> bool:
    try:
        await broker.get("a")
    except BrokerUnavailable:
        return False
    return True


async def test_a_worker_whose_connection_stalls_stops_within_its_deadline(proxy: Proxy) -> None:
    async with postgres_broker(time.time) as direct:
        proxied = PostgresBroker(through(proxy, direct.schema), clock=time.time)
        took = await check_worker_stops_while_stalled(proxied, direct, proxy)
    # shutdown_grace + broker_timeout + the documented second, plus the limits of a shielded
    # release and of closing the pool and the LISTEN connection (2 s each, pool.CLOSE_LIMIT), and
    # a second of slack for a busy machine.
    assert took < GRACE + TIMEOUT + 1 + 2 + 2 + 2 + 1, took
