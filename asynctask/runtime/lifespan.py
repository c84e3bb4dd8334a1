"""Entering and exiting the app's worker lifespan (``@app.lifespan``) around a worker's run.

The worker enters it once, after connecting to the broker and before its first claim, and exits
it after its drain (running jobs finished or handed back, outcomes reported), so no handler ever
sees a closed resource. A failure while entering stops the worker before it claims anything,
with :class:`~asynctask.errors.LifespanFailed` (one line). A stop requested while entering cuts
the entering short. A failure while exiting is logged; the exit has ``timeout`` seconds (the
worker's ``broker_timeout``) and is shielded from cancellation.
"""

from __future__ import annotations

import logging
from contextlib import AbstractAsyncContextManager
from typing import Any

import anyio

from asynctask.ctx import NO_RESOURCES
from asynctask.errors import LifespanFailed
from asynctask.lifespan import LifespanFactory
from asynctask.registry import Registry
from asynctask.runtime.control import Control

__all__ = ["WorkerLifespan"]

log = logging.getLogger("asynctask.worker")


class WorkerLifespan:
    """One worker's use of its registry's lifespan: :meth:`enter` once, then :meth:`exit`."""

    def __init__(self, registry: Registry, *, timeout: float) -> None:
        self.registry = registry
        self.timeout = timeout
        #: What the lifespan yielded (``ctx.resources``); ``NO_RESOURCES`` without one.
        self.resources: Any = NO_RESOURCES
        self._entered: AbstractAsyncContextManager[Any] | None = None

    async def enter(self, control: Control) -> Any:
        """Enter the lifespan and return what it yields; raises :class:`LifespanFailed`."""
        factory: LifespanFactory | None = self.registry.worker_lifespan  # read now: tests swap it
        if factory is not None:
            name = getattr(factory, "__qualname__", repr(factory))
            manager: Any = None
            with anyio.CancelScope() as scope:
                control.on_stop(scope.cancel)
                if control.stopping:
                    return NO_RESOURCES
                try:
                    manager = factory()
                    if not hasattr(manager, "__aenter__"):
                        raise TypeError(f"it returned {manager!r}, not an async context manager")
                    self.resources = await manager.__aenter__()
                except Exception as exc:
                    raise LifespanFailed(
                        f"the worker lifespan {name} failed while starting: {_one_line(exc)}"
                    ) from exc
                self._entered = manager
            if scope.cancelled_caught:
                return NO_RESOURCES
        return self.resources

    async def exit(self) -> None:
        """Exit the lifespan if it was entered; errors are logged, not raised."""
        manager, self._entered = self._entered, None
        if manager is None:
            return
        with anyio.CancelScope(shield=True), anyio.move_on_after(self.timeout) as deadline:
            try:
                await manager.__aexit__(None, None, None)
            except Exception:
                log.exception("the worker lifespan failed while closing", extra={"action": "lifespan_error"})
        if deadline.cancelled_caught:
            log.error(
                "the worker lifespan did not close within %.1fs; gave up waiting",
                self.timeout,
                extra={"action": "lifespan_error"},
            )


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
