"""The worker's record in the broker's worker registry: written at start and at every heartbeat,
removed at a clean stop, gone by itself three heartbeats after the worker died.

``app.list_workers()``, ``asynctask workers APP`` and the dashboard read it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import anyio

from asynctask.brokers.base import Broker
from asynctask.models import WorkerInfo

__all__ = ["HEARTBEATS_TO_LIVE", "Presence"]

log = logging.getLogger("asynctask.worker")

#: A record lives this many heartbeats: one missed heartbeat (a slow broker) does not hide a
#: live worker; a dead one is gone soon after.
HEARTBEATS_TO_LIVE = 3


class Presence:
    """Keeps ``info()`` recorded in ``broker`` every ``interval`` seconds until cancelled."""

    def __init__(
        self, broker: Broker, info: Callable[[], WorkerInfo], *, interval: float, timeout: float
    ) -> None:
        self.broker = broker
        self.info = info
        self.interval = interval
        self.timeout = timeout
        self._failing = False
        # A broker written against the protocol before the registry (a plugin) keeps no record.
        self._unsupported = not hasattr(broker, "record_worker")
        if self._unsupported:
            log.info("this broker keeps no worker registry", extra={"action": "presence_unsupported"})

    async def run(self) -> None:
        """Refresh the record every ``interval`` (the worker records itself once before, at start)."""
        while True:
            await anyio.sleep(self.interval)
            await self.run_once()

    async def run_once(self, *, deadline: float | None = None) -> None:
        """Write the record once; a failure is logged and left to the next heartbeat."""
        if self._unsupported:
            return
        limit = min(self.timeout, self.interval * HEARTBEATS_TO_LIVE, deadline or float("inf"))
        try:
            with anyio.fail_after(limit):
                await self.broker.record_worker(self.info(), ttl=self.interval * HEARTBEATS_TO_LIVE)
        except Exception as exc:
            # Once per failing spell: the fetchers already say when the broker is away.
            if not self._failing:
                log.warning(
                    "recording this worker in the broker failed: %s",
                    str(exc) or type(exc).__name__,
                    extra={"action": "presence_error"},
                )
            self._failing = True
        else:
            self._failing = False

    async def remove(self, timeout: float) -> None:
        """Take the record out (a clean stop); on failure it expires by itself."""
        worker_id = self.info().id
        if self._unsupported:
            return
        try:
            with anyio.fail_after(timeout):
                await self.broker.remove_worker(worker_id)
        except Exception as exc:
            log.info(
                "could not remove worker %s from the registry (%s); it expires in %.0fs",
                worker_id,
                str(exc) or type(exc).__name__,
                self.interval * HEARTBEATS_TO_LIVE,
                extra={"action": "presence_error"},
            )
