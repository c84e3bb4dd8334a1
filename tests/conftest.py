from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from asynctask.brokers import Broker
from asynctask.testing import FakeClock
from tests import backends


@pytest.fixture(scope="session", autouse=True)
def _private_servers() -> Iterator[None]:
    """Stop the servers this test process started on demand (the mongoeco one), by PID."""
    yield
    from tests.mongo import server

    server.stop()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(start=1_800_000_000.0)


@pytest.fixture(params=backends.selected())
def broker_name(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
async def broker(broker_name: str, clock: FakeClock) -> AsyncIterator[Broker]:
    """An opened, isolated broker of each kind, on a fake clock."""
    async with backends.FACTORIES[broker_name](clock) as b:
        yield b
