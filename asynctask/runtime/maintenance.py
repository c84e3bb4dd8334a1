"""The maintainer: promotes due delayed jobs, rescues expired leases, prunes expired jobs."""

from __future__ import annotations

import logging
import random

import anyio

from asynctask.brokers.base import Broker

__all__ = ["Maintainer"]

log = logging.getLogger("asynctask.worker")

#: Most jobs one maintenance call moves.
_LIMIT = 1000


class Maintainer:
    def __init__(self, broker: Broker, *, interval: float, timeout: float) -> None:
        self.broker = broker
        self.interval = interval
        self.timeout = timeout

    async def run(self) -> None:
        while True:
            # Jitter keeps many workers from hitting the broker in lockstep.
            await anyio.sleep(self.interval * random.uniform(0.5, 1.0))
            await self.run_once()

    async def run_once(self) -> None:
        broker = self.broker
        try:
            with anyio.fail_after(3 * self.timeout):
                promoted = await broker.promote_due(_LIMIT)
                rescued = await broker.rescue_expired(_LIMIT)
                pruned = await broker.prune(_LIMIT)
        except Exception as exc:
            log.warning(
                "maintenance failed: %s",
                str(exc) or type(exc).__name__,
                extra={"action": "maintenance_error"},
            )
            return
        if rescued:
            log.warning("rescued %d job(s) whose lease expired", rescued, extra={"action": "leases_rescued"})
        if promoted or pruned:
            log.debug("promoted %d, pruned %d", promoted, pruned, extra={"action": "maintenance"})
