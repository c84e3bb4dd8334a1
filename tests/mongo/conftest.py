from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from asynctask.brokers.mongo import MongoBroker
from asynctask.testing import FakeClock
from tests.backend_mongo import mongo_broker


@pytest.fixture(params=[True, False], ids=["tx", "notx"])
async def broker(request: pytest.FixtureRequest, clock: FakeClock) -> AsyncIterator[MongoBroker]:
    """An opened Mongo broker on a fresh prefix, with transactions and without."""
    async with mongo_broker(clock, transactions=request.param) as opened:
        yield opened


@pytest.fixture
async def notx(clock: FakeClock) -> AsyncIterator[MongoBroker]:
    """A broker forced onto the non-transactional path."""
    async with mongo_broker(clock, transactions=False, repair_after=30.0) as opened:
        yield opened
