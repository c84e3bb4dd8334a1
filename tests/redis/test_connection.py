"""Opening a broker: clear errors with redacted credentials, and the eviction warning."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest

from asynctask.brokers import broker_from_url
from asynctask.brokers.redis import RedisBroker
from asynctask.errors import BrokerUnavailable, ConfigurationError
from tests.redis.helpers import broker_for
from tests.redis.server import RedisServer, free_port

pytestmark = pytest.mark.anyio

ServerFactory = Callable[..., RedisServer]


def eviction_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if getattr(r, "action", None) == "redis_eviction_warning"]


async def test_wrong_password_is_unavailable_and_redacted(own_server: ServerFactory) -> None:
    server = own_server("--requirepass", "right-secret")
    url = f"redis://:wrong-secret@127.0.0.1:{server.port}/0"
    broker = broker_from_url(url)
    assert isinstance(broker, RedisBroker)
    assert "wrong-secret" not in broker.display_url and "***" in broker.display_url
    assert "wrong-secret" not in repr(broker)
    with pytest.raises(BrokerUnavailable) as info:
        await broker.open()
    message = str(info.value)
    assert f"127.0.0.1:{server.port}" in message
    assert "wrong-secret" not in message and "right-secret" not in message
    await broker.close()


async def test_missing_password_is_unavailable(own_server: ServerFactory) -> None:
    server = own_server("--requirepass", "right-secret")
    broker = RedisBroker.from_url(server.url)
    with pytest.raises(BrokerUnavailable, match=f"127.0.0.1:{server.port}"):
        await broker.open()
    await broker.close()


async def test_right_password_opens(own_server: ServerFactory) -> None:
    server = own_server("--requirepass", "right-secret")
    broker = RedisBroker.from_url(f"redis://:right-secret@127.0.0.1:{server.port}/0")
    await broker.open()
    try:
        assert await broker.get("nothing") is None
    finally:
        await broker.close()


async def test_unreachable_server_is_unavailable() -> None:
    port = free_port()  # nothing listens here
    broker = RedisBroker.from_url(f"redis://:pw@127.0.0.1:{port}/0")
    with pytest.raises(BrokerUnavailable) as info:
        await broker.open()
    assert f"127.0.0.1:{port}" in str(info.value)
    assert "pw" not in str(info.value).replace(str(port), "")
    await broker.close()


async def test_eviction_policy_warning(own_server: ServerFactory, caplog: pytest.LogCaptureFixture) -> None:
    server = own_server("--maxmemory-policy", "allkeys-lru")
    broker = RedisBroker.from_url(server.url)
    with caplog.at_level(logging.WARNING, logger="asynctask.brokers.redis"):
        await broker.open()
    await broker.close()
    [record] = eviction_warnings(caplog)
    assert record.name == "asynctask.brokers.redis"
    assert "allkeys-lru" in record.getMessage() and "noeviction" in record.getMessage()


async def test_no_warning_with_noeviction(prefix: str, caplog: pytest.LogCaptureFixture) -> None:
    broker = broker_for(prefix)
    with caplog.at_level(logging.DEBUG, logger="asynctask.brokers.redis"):
        await broker.open()
    await broker.close()
    assert eviction_warnings(caplog) == []


async def test_disabled_config_command_is_tolerated(own_server: ServerFactory) -> None:
    server = own_server("--maxmemory-policy", "allkeys-lru", "--rename-command", "CONFIG", "")
    broker = RedisBroker.from_url(server.url)
    await broker.open()
    try:
        assert await broker.get("nothing") is None
    finally:
        await broker.close()


def test_url_options() -> None:
    broker = RedisBroker.from_url("rediss://user:s3cret@example.com:6380/2?prefix=app")
    assert broker.keys.prefix == "app"
    assert broker.display_url == "rediss://user:***@example.com:6380/2?prefix=app"
    assert broker.capabilities.push_wakeups


def test_decoding_client_is_refused() -> None:
    from redis.asyncio import Redis

    with pytest.raises(ConfigurationError, match="decode_responses"):
        RedisBroker(client=Redis(decode_responses=True))


def test_password_option_is_redacted_too() -> None:
    broker = RedisBroker.from_url("redis://localhost:6379/0?password=s3cret&prefix=app")
    assert "s3cret" not in broker.display_url and "password=***" in broker.display_url


async def test_a_client_passed_in_stays_open(prefix: str) -> None:
    from redis.asyncio import Redis

    from tests.backend_redis import REDIS_URL

    client = Redis.from_url(REDIS_URL)
    try:
        broker = RedisBroker(client=client, prefix=prefix)
        assert broker.display_url.startswith("redis://127.0.0.1:6379/0?prefix=")
        await broker.open()
        await broker.close()
        await broker.close()  # twice is fine
        assert await client.ping()
    finally:
        await client.aclose()
