"""This repository's brokers, each given to the packaged contract suite as its ``broker_factory``."""

from __future__ import annotations

import pytest

from asynctask.testing.contract import BrokerFactory
from tests import backends


@pytest.fixture(params=backends.selected())
def broker_factory(request: pytest.FixtureRequest) -> BrokerFactory:
    return backends.FACTORIES[request.param]
