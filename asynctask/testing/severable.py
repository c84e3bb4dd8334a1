"""A worker host whose broker can be cut off: how in-process tests play a worker that died."""

from __future__ import annotations

import inspect
from typing import Any

from asynctask.app import App
from asynctask.errors import BrokerUnavailable
from asynctask.registry import Registry


class _SeverableBroker:
    """Forwards every call to ``broker`` until severed; then every data call fails (open and close
    still reach it, so its open count stays balanced)."""

    def __init__(self, broker: Any) -> None:
        self._broker = broker
        self.severed = False

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._broker, name)
        if not inspect.iscoroutinefunction(attr) or name in ("open", "close"):
            return attr

        async def call(*args: Any, **kwargs: Any) -> Any:
            if self.severed:
                raise BrokerUnavailable("severed by the test")
            return await attr(*args, **kwargs)

        return call


class Severable:
    """A :class:`~asynctask.registry.WorkerHost` over ``app``'s registry and broker; :meth:`sever`
    cuts the worker off, so it can neither report nor hand back the jobs it holds."""

    def __init__(self, app: App) -> None:
        self.registry: Registry = app
        self.broker: Any = _SeverableBroker(app.broker)

    def sever(self) -> None:
        self.broker.severed = True

    async def open(self) -> None:
        await self.broker.open()

    async def close(self) -> None:
        await self.broker.close()
