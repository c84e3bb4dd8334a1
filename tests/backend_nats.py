"""The NATS broker for the shared suites: one fresh bucket prefix per broker, deleted afterwards.

The server is started on first use, once per test process (so once per xdist worker), on a free
loopback port with a temporary store directory, and killed by its PID at the end of the session
(tests/conftest.py; an xdist worker can exit without running ``atexit``, which stays as a
fallback for a process that has no session).
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
_directory: Path | None = None


def server_url() -> str:
    """The URL of the tests' shared server, started on first call."""
    global _server, _directory
    url = env_url()
    if url:
        return url
    if _server is None:
        _directory = Path(tempfile.mkdtemp(prefix="asynctask-nats-"))
        (_directory / "store").mkdir()
        atexit.register(stop)
        server = NatsServer(_directory / "store")
        server.start()
        _server = server
    return _server.url


def stop() -> None:
    """Kill the shared server if this process started it, and remove its store; safe to repeat."""
    global _server, _directory
    server, directory, _server, _directory = _server, _directory, None, None
    if server is not None:
        server.kill()
    if directory is not None:
        shutil.rmtree(directory, ignore_errors=True)


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
