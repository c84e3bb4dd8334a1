"""The broker contract, shipped as a pytest plugin: prove that a broker keeps every promise.

Every broker in this repository runs through it, and a broker written elsewhere can too. Give a
``broker_factory`` fixture, a callable ``(clock) -> async context manager`` that yields an
*opened* broker, isolated from other tests (its own schema, key prefix or stream names) and
reading time from ``clock``; then import the suite into a test module::

    # tests/test_contract.py
    import contextlib

    import pytest
    from asynctask.testing.contract import *  # noqa: F403 - every contract test

    @pytest.fixture
    def broker_factory():
        @contextlib.asynccontextmanager
        async def factory(clock):
            broker = MyBroker("mybroker://localhost", clock=clock, namespace=unique_name())
            await broker.open()
            try:
                yield broker
            finally:
                await broker.close()
        return factory

and run ``pytest -p asynctask.testing.contract tests/test_contract.py`` (the plugin provides the
``clock``, ``broker``, ``app`` and ``anyio_backend`` fixtures; the star import brings them too).

The suite (:mod:`asynctask.testing.contract.suite`): the broker protocol rule by rule on a fake
clock (enqueue, claim order, leases and fencing, completion, state, management, listing,
wake-ups, opening, the workflow counter), a differential run against the in-memory reference,
and the worker, workflow and periodic semantics end to end through an ``App``. Where brokers
differ, they say so in ``broker.capabilities``; no test is skipped.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager

import pytest

# Before the suite is imported: its plain asserts then report what they compared.
pytest.register_assert_rewrite("asynctask.testing.contract.suite")

from asynctask.app import App  # noqa: E402
from asynctask.brokers.base import Broker, Clock  # noqa: E402
from asynctask.retry import Fixed  # noqa: E402
from asynctask.testing import FakeClock  # noqa: E402
from asynctask.testing.contract.suite import (  # noqa: E402
    adoption,
    broker_jobs,
    broker_leases,
    broker_workflows,
    differential,
    flow,
    inspection,
    observability,
    periodic,
    robustness,
    worker_jobs,
    worker_lifecycle,
    workflows,
)

#: What a ``broker_factory`` fixture returns: ``factory(clock)`` yields an opened, isolated broker.
BrokerFactory = Callable[[Clock], AbstractAsyncContextManager[Broker]]

#: The fake clock's start: a fixed instant, so runs are reproducible.
START = 1_800_000_000.0


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def clock() -> FakeClock:
    """The fake clock the broker and the app read; tests move it with ``clock.advance``."""
    return FakeClock(start=START)


@pytest.fixture
async def broker(broker_factory: BrokerFactory, clock: FakeClock) -> AsyncIterator[Broker]:
    """An opened, isolated broker from your ``broker_factory``, on the fake clock."""
    async with broker_factory(clock) as opened:
        yield opened


@pytest.fixture
def app(broker: Broker, clock: FakeClock) -> App:
    """An App on the broker under test: retries without delay, short TTLs, the fake clock."""
    return App(broker, clock=clock, retry=Fixed(0), result_ttl=60, failed_ttl=600)


__all__ = ["START", "BrokerFactory", "anyio_backend", "app", "broker", "clock"]

for _module in (
    broker_jobs,
    broker_leases,
    broker_workflows,
    differential,
    inspection,
    observability,
    worker_jobs,
    worker_lifecycle,
    workflows,
    periodic,
    robustness,
    flow,
    adoption,
):
    for _name, _test in vars(_module).items():
        if _name.startswith("test_") and inspect.isfunction(_test):
            globals()[_name] = pytest.mark.anyio(_test)
            __all__.append(_name)
