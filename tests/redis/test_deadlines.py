"""Our own socket timeouts: recovery from a stalled connection does not depend on the redis-py
version (issue #11, item 7), and the URL's database must be a number (item 11)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import anyio
import pytest

from asynctask.brokers.redis import RedisBroker
from asynctask.brokers.redis.connection import CONNECT_TIMEOUT, SOCKET_TIMEOUT
from asynctask.errors import ConfigurationError
from tests.backend_redis import REDIS_URL
from tests.proxy import Proxy
from tests.redis.helpers import broker_for, job
from tests.stalled_worker import GRACE, TIMEOUT, check_worker_recovers, check_worker_stops_while_stalled

pytestmark = pytest.mark.anyio


@pytest.fixture
def proxy() -> Iterator[Proxy]:
    parts = urlsplit(REDIS_URL)
    with Proxy(parts.hostname or "127.0.0.1", parts.port or 6379) as proxy:
        yield proxy


def through(proxy: Proxy, prefix: str, query: str = "") -> str:
    return f"redis://127.0.0.1:{proxy.port}{urlsplit(REDIS_URL).path}?prefix={prefix}{query}"


def timeouts(broker: RedisBroker) -> tuple[object, object]:
    kwargs = broker._client.connection_pool.connection_kwargs
    return kwargs.get("socket_timeout"), kwargs.get("socket_connect_timeout")


def test_socket_timeouts_are_ours_unless_configured() -> None:
    assert timeouts(RedisBroker.from_url("redis://h:6379/0")) == (SOCKET_TIMEOUT, CONNECT_TIMEOUT)
    url = "redis://h:6379/0?socket_timeout=2&socket_connect_timeout=1.5&prefix=p"
    assert timeouts(RedisBroker.from_url(url)) == (2.0, 1.5)
    assert timeouts(RedisBroker.from_url(url, socket_timeout=3)) == (3.0, 1.5)
    for bad in ("0", "-2", "nan", "later"):
        with pytest.raises(ConfigurationError, match="socket_timeout"):
            RedisBroker.from_url(f"redis://h:6379/0?socket_timeout={bad}")


@pytest.mark.parametrize("path", ["/notanumber", "/0x1", "/-1", "/1/2"])
def test_a_database_that_is_not_a_number_is_rejected(path: str) -> None:
    with pytest.raises(ConfigurationError, match="database number"):
        RedisBroker.from_url(f"redis://:s3cret@h:6379{path}")


@pytest.mark.parametrize("path", ["", "/", "/0", "/15"])
def test_database_numbers_are_accepted(path: str) -> None:
    RedisBroker.from_url(f"redis://h:6379{path}")


async def test_a_stalled_connection_is_dropped_after_the_socket_timeout(proxy: Proxy, prefix: str) -> None:
    broker = RedisBroker.from_url(through(proxy, prefix), socket_timeout=0.5)
    await broker.open()
    try:
        await broker.enqueue([job("a", time.time())])
        proxy.stall()
        started = time.monotonic()
        with anyio.fail_after(10):
            found = await broker.get("a")  # times out, reconnects, retries
        assert found is not None and found.id == "a"
        assert time.monotonic() - started < 5
    finally:
        await broker.close()


async def test_a_worker_whose_connection_stalls_is_back_at_work(proxy: Proxy, prefix: str) -> None:
    proxied = RedisBroker.from_url(through(proxy, prefix, "&socket_timeout=1"))
    await check_worker_recovers(proxied, broker_for(prefix), proxy, bound=15)


async def test_a_worker_whose_connection_stalls_stops_within_its_deadline(proxy: Proxy, prefix: str) -> None:
    proxied = RedisBroker.from_url(through(proxy, prefix, "&socket_timeout=1"))
    took = await check_worker_stops_while_stalled(proxied, broker_for(prefix), proxy)
    assert took < GRACE + TIMEOUT + 1 + 1, took
