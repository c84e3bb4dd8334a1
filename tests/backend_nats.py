"""The NATS broker for the shared suites: one fresh bucket prefix per broker, deleted afterwards.

The server is started on first use, once per test process (so once per xdist worker), on a free
loopback port with a temporary store directory, and killed by its PID when the process exits.
``ASYNCTASK_TEST_NATS_URL`` points the tests at a running server (2.12.1+) instead.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from asynctask.brokers import Broker
from asynctask.brokers.base import Clock
from asynctask.brokers.nats import NatsBroker
from tests.nats.server import NatsServer, env_url

_server: NatsServer | None = None


def server_url() -> str:
    """The URL of the tests' shared server, started on first call."""
    global _server
    url = env_url()
    if url:
        return url
    if _server is None:
        directory = Path(tempfile.mkdtemp(prefix="asynctask-nats-"))
        (directory / "store").mkdir()
        server = NatsServer(directory / "store")
        server.start()
        _server = server

        def stop() -> None:
            server.kill()
            shutil.rmtree(directory, ignore_errors=True)

        atexit.register(stop)
    return _server.url


def fresh_prefix() -> str:
    return f"t{uuid.uuid4().hex[:16]}"


@asynccontextmanager
async def factory(clock: Clock) -> AsyncIterator[Broker]:
    broker = NatsBroker(server_url(), prefix=fresh_prefix(), clock=clock)
    await broker.open()
    try:
        yield broker
    finally:
        try:
            await broker.store.drop()
        finally:
            await broker.close()
