from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import pytest

from asynctask.brokers.base import Clock
from asynctask.brokers.nats import NatsBroker
from tests.backend_nats import fresh_prefix, server_url

BrokerMaker = Callable[..., AbstractAsyncContextManager[NatsBroker]]


@pytest.fixture
async def brokers() -> AsyncIterator[BrokerMaker]:
    """``async with brokers(clock) as b``: brokers with their own connections on one fresh bucket."""
    prefix = fresh_prefix()
    opened: list[NatsBroker] = []

    @asynccontextmanager
    async def make(clock: Clock) -> AsyncIterator[NatsBroker]:
        broker = NatsBroker(server_url(), prefix=prefix, clock=clock)
        await broker.open()
        opened.append(broker)
        try:
            yield broker
        finally:
            await broker.close()

    yield make
    if opened:
        async with make(opened[0].clock) as last:
            await last.store.drop()
