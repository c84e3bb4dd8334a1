"""Observability tests run on every broker of tests/backends.py (the contract plugin's ``broker``,
``app`` and ``clock`` fixtures)."""

from __future__ import annotations

import pytest

from asynctask.testing.contract import BrokerFactory
from tests import backends


@pytest.fixture(params=backends.selected())
def broker_factory(request: pytest.FixtureRequest) -> BrokerFactory:
    return backends.FACTORIES[request.param]
