"""The pytest plugin for testing your tasks: ``pytest -p asynctask.testing.plugin``.

(or ``pytest_plugins = ["asynctask.testing.plugin"]`` in a ``conftest.py``). Fixtures:

* ``asynctask_clock``: a :class:`~asynctask.testing.FakeClock` at the current time;
* ``asynctask_app``: your App (named by the ``asynctask_app`` ini option, e.g.
  ``asynctask_app = "myapp.jobs:app"`` in ``[tool.pytest.ini_options]``; a fresh
  ``App("memory://")`` without one), opened on a fresh in-memory broker that reads
  ``asynctask_clock``, for the length of one test. Its tasks publish there, and
  :func:`~asynctask.testing.drain` moves the clock through delays and retries. The app's own broker
  and clock are put back after the test.
* ``anyio_backend``: ``"asyncio"`` (asynctask runs on asyncio): mark async tests
  ``@pytest.mark.anyio`` (or ``pytestmark = pytest.mark.anyio``) to run them with anyio's plugin.

Nothing here collides with the broker contract plugin (:mod:`asynctask.testing.contract`), whose
fixtures are ``clock``, ``broker`` and ``app``.
"""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator

import pytest

from asynctask.app import App
from asynctask.brokers.memory import MemoryBroker
from asynctask.testing.clock import FakeClock

__all__ = ["anyio_backend", "asynctask_app", "asynctask_clock", "pytest_addoption"]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        "asynctask_app",
        "The App the asynctask_app fixture uses, as 'package.module:attribute' (default: a fresh App).",
        default="",
    )


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def asynctask_clock() -> FakeClock:
    """A fake clock at the current time; the ``asynctask_app`` fixture's app and broker read it."""
    return FakeClock()


@pytest.fixture
async def asynctask_app(request: pytest.FixtureRequest, asynctask_clock: FakeClock) -> AsyncIterator[App]:
    """Your App on a fresh ``memory://`` broker and the fake clock, opened for one test."""
    path = str(request.config.getini("asynctask_app") or "")
    app = _load(path) if path else App("memory://")
    if app.broker.is_open:
        raise pytest.UsageError(f"asynctask_app: {path} is open already; the fixture needs it closed")
    broker, clock = app.broker, app.clock
    app.clock = asynctask_clock
    app.set_broker(MemoryBroker(clock=asynctask_clock))
    try:
        async with app:
            yield app
    finally:
        app.set_broker(broker)
        app.clock = clock


def _load(path: str) -> App:
    module_name, _, attr = path.partition(":")
    try:
        app = getattr(importlib.import_module(module_name), attr or "app")
    except (ImportError, AttributeError) as exc:
        raise pytest.UsageError(f"asynctask_app = {path!r}: {exc}") from exc
    if not isinstance(app, App):
        raise pytest.UsageError(f"asynctask_app = {path!r} is a {type(app).__name__}, not an asynctask.App")
    return app
