from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from asynctask.brokers.redis.keys import Keys
from tests.backend_redis import REDIS_URL
from tests.redis.server import RedisServer


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    """A fresh key prefix on the shared server, deleted afterwards."""
    name = f"t:{uuid.uuid4().hex}"
    yield name
    client = Redis.from_url(REDIS_URL)
    try:
        keys = [key async for key in client.scan_iter(match=Keys(name).pattern(), count=1000)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[Callable[..., RedisServer]]:
    """Start private servers with ``own_server(*args)``; all are killed at the end."""
    started: list[RedisServer] = []

    def start(*args: str) -> RedisServer:
        directory = tmp_path / f"redis{len(started)}"
        directory.mkdir()
        server = RedisServer(directory, *args)
        started.append(server)
        server.start()
        return server

    try:
        yield start
    finally:
        for server in started:
            server.stop()
