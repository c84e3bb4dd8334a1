"""The heartbeat: extends the leases of held jobs, and learns of cancel and pause requests and of
leases lost (the job was rescued by another worker, or deleted)."""

from __future__ import annotations

import logging

import anyio

from asynctask.brokers.base import Broker
from asynctask.models import LeaseState
from asynctask.runtime.attempt import Attempt
from asynctask.runtime.control import Slots
from asynctask.runtime.outcome import Interruption

__all__ = ["Heartbeat"]

log = logging.getLogger("asynctask.worker")


class Heartbeat:
    def __init__(
        self,
        broker: Broker,
        *,
        slots: Slots,
        attempts: dict[str, Attempt],
        lease: float,
        interval: float,
        timeout: float,
    ) -> None:
        self.broker = broker
        self.slots = slots
        self.attempts = attempts
        self.lease = lease
        self.interval = interval
        self.timeout = timeout

    async def run(self) -> None:
        while True:
            await anyio.sleep(self.interval)
            await self.run_once()

    async def run_once(self) -> None:
        leases = list(self.slots.held.values())
        if not leases:
            return
        try:
            # Never longer than a lease: a late renewal is worth nothing.
            with anyio.fail_after(min(self.timeout, self.lease)):
                states = await self.broker.extend_leases(leases, lease=self.lease)
        except Exception as exc:
            log.warning(
                "extending %d lease(s) failed: %s",
                len(leases),
                str(exc) or type(exc).__name__,
                extra={"action": "heartbeat_error"},
            )
            return
        for lease, state in zip(leases, states, strict=True):
            if state is LeaseState.OK:
                continue
            attempt = self.attempts.get(lease.job_id)
            if attempt is None or attempt.job.token != lease.token:
                continue
            if state is LeaseState.CANCEL:
                attempt.interrupt(Interruption.CANCEL_REQUESTED)
            elif state is LeaseState.PAUSE:
                attempt.request_pause()
            else:
                attempt.interrupt(Interruption.LEASE_LOST)
                await self._say_lost(lease.job_id)

    async def _say_lost(self, job_id: str) -> None:
        try:
            with anyio.fail_after(self.timeout):
                gone = await self.broker.get(job_id) is None
        except Exception:
            gone = False
        log.warning(
            "job %s %s; its handler is cancelled and its outcome discarded",
            job_id,
            "was deleted while it ran" if gone else "lost its lease to another worker",
            extra={"action": "job_deleted" if gone else "lease_lost", "job_id": job_id},
        )
