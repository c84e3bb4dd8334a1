"""Writes without redis-py's per-command write task (connection._WriteNow)."""

from __future__ import annotations

import pytest
from redis.asyncio.connection import AbstractConnection, SSLConnection, UnixDomainSocketConnection

from asynctask.brokers.redis.connection import _WriteNow, blocking_client, client_from_url
from tests.backend_redis import REDIS_URL

pytestmark = pytest.mark.anyio


def test_clients_from_urls_write_now_whatever_the_transport() -> None:
    for url, kind in [
        ("redis://localhost:6379/0", None),
        ("rediss://localhost:6379/0", SSLConnection),
        ("unix:///tmp/redis.sock", UnixDomainSocketConnection),
    ]:
        cls = client_from_url(url).connection_pool.connection_class
        assert issubclass(cls, _WriteNow)
        assert kind is None or issubclass(cls, kind)


async def test_commands_small_and_larger_than_the_socket_buffer_arrive(prefix: str) -> None:
    client = client_from_url(REDIS_URL)
    blocking = blocking_client(client)
    try:
        big = b"x" * (16 << 20)  # far more than a socket buffer: the rest is drained under the deadline
        await client.set(f"{prefix}:big", big)
        await client.set(f"{prefix}:small", b"1")
        assert await client.get(f"{prefix}:big") == big
        assert await client.get(f"{prefix}:small") == b"1"
        async with client.pipeline(transaction=False) as pipe:
            pipe.set(f"{prefix}:a", big)
            pipe.get(f"{prefix}:small")
            assert await pipe.execute() == [True, b"1"]
        assert await blocking.get(f"{prefix}:small") == b"1"  # (no deadline there: redis-py's path)
    finally:
        await blocking.aclose()
        await client.aclose()


async def test_a_small_command_on_an_open_connection_skips_redis_pys_path(
    prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fails if redis-py's internals moved (the fallback then works, but the saving is gone)."""
    client = client_from_url(REDIS_URL)
    try:
        await client.set(f"{prefix}:k", b"1")  # opens the connection (redis-py's path)

        async def refuse(*args: object, **kwargs: object) -> None:
            raise AssertionError("redis-py's send_packed_command was used")

        monkeypatch.setattr(AbstractConnection, "send_packed_command", refuse)
        assert await client.get(f"{prefix}:k") == b"1"
    finally:
        monkeypatch.undo()
        await client.aclose()
