"""A worker host whose broker can be cut off or made to hang: how in-process tests play a worker
that died, or one whose connection stalled."""

from __future__ import annotations

import inspect
from typing import Any

import anyio

from asynctask.app import App
from asynctask.errors import BrokerUnavailable
from asynctask.registry import Registry

__all__ = ["Severable"]


class _SeverableBroker:
    """Forwards every call to ``broker`` until severed (every data call then fails) or stalled
    (every data call then hangs). ``open`` and ``close`` always reach it, so its open count stays
    balanced."""

    def __init__(self, broker: Any) -> None:
        self._broker = broker
        self.severed = False
        self.stalled = False

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._broker, name)
        if not inspect.iscoroutinefunction(attr) or name in ("open", "close"):
            return attr

        async def call(*args: Any, **kwargs: Any) -> Any:
            if self.stalled:
                await anyio.sleep_forever()
            if self.severed:
                raise BrokerUnavailable("severed by the test")
            return await attr(*args, **kwargs)

        return call


class Severable:
    """A :class:`~asynctask.registry.WorkerHost` over ``app``'s registry and broker.

    :meth:`sever` cuts the worker off, so it can neither report nor hand back the jobs it holds;
    :meth:`stall` makes every broker call hang, like a connection that stopped answering.
    """

    def __init__(self, app: App) -> None:
        self.registry: Registry = app
        self.broker: Any = _SeverableBroker(app.broker)

    def sever(self) -> None:
        self.broker.severed = True

    def stall(self) -> None:
        self.broker.stalled = True

    async def open(self) -> None:
        await self.broker.open()

    async def close(self) -> None:
        await self.broker.close()
