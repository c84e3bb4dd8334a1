"""One factory per broker for the shared suites: each yields an opened, isolated broker.

Isolation: every broker gets its own namespace (a fresh schema, key prefix or stream name), so
tests never see each other's jobs and can run in parallel. ``ASYNCTASK_TEST_BROKERS`` (comma
separated) narrows the list, e.g. ``ASYNCTASK_TEST_BROKERS=memory pytest``.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from asynctask.brokers import Broker, MemoryBroker
from asynctask.brokers.base import Clock

BrokerFactory = Callable[[Clock], AbstractAsyncContextManager[Broker]]


@asynccontextmanager
async def memory_broker(clock: Clock) -> AsyncIterator[Broker]:
    broker = MemoryBroker(clock=clock)
    await broker.open()
    try:
        yield broker
    finally:
        await broker.close()


FACTORIES: dict[str, BrokerFactory] = {"memory": memory_broker}

# Each server-backed broker registers its factory from its own module,
# ``tests/backend_<name>.py``, defining ``factory: BrokerFactory`` (registered under <name>), or
# ``FACTORIES: dict[str, BrokerFactory]`` for several configurations of one broker.
for _name in ("postgres", "redis", "mongo", "nats"):
    try:
        _module = importlib.import_module(f"tests.backend_{_name}")
    except ModuleNotFoundError as _exc:
        if _exc.name != f"tests.backend_{_name}":
            raise
        continue
    FACTORIES.update(getattr(_module, "FACTORIES", None) or {_name: _module.factory})


def selected() -> list[str]:
    wanted = os.environ.get("ASYNCTASK_TEST_BROKERS")
    if not wanted:
        return list(FACTORIES)
    names = [n.strip() for n in wanted.split(",") if n.strip()]
    unknown = set(names) - set(FACTORIES)
    if unknown:
        raise RuntimeError(f"ASYNCTASK_TEST_BROKERS names unknown brokers: {sorted(unknown)}")
    return names
