"""The fetcher: one per queue, claims batches sized to the free slots, sleeps on the broker's wake-up."""

from __future__ import annotations

import logging
from functools import partial

import anyio
from anyio.streams.memory import MemoryObjectSendStream

from asynctask.brokers.base import Broker
from asynctask.models import Job, Lease
from asynctask.runtime.control import Control, Slots, WorkerStats

__all__ = ["Fetcher"]

log = logging.getLogger("asynctask.worker")

_MIN_BACKOFF = 0.05
_MAX_BACKOFF = 5.0


class Fetcher:
    """Claims jobs of one queue into the executors' stream until the worker stops."""

    def __init__(
        self,
        broker: Broker,
        queue: str,
        *,
        slots: Slots,
        control: Control,
        stats: WorkerStats,
        worker_id: str,
        batch_size: int,
        lease: float,
        poll_interval: float,
        timeout: float,
    ) -> None:
        self.broker = broker
        self.queue = queue
        self.slots = slots
        self.control = control
        self.stats = stats
        self.worker_id = worker_id
        self.batch_size = batch_size
        self.lease = lease
        self.poll_interval = poll_interval
        self.timeout = timeout
        #: Claims sent and answered so far, and whether the last answer had fewer jobs than asked.
        self.claims_sent = 0
        self.claims = 0
        self.dry = False

    async def run(self, send: MemoryObjectSendStream[Job]) -> None:
        backoff = _MIN_BACKOFF
        control, slots, queue = self.control, self.slots, self.queue
        async with send:
            while not control.stopping:
                n = slots.reserve(queue, self.batch_size)
                if n == 0:
                    await control.unless_stopping(partial(slots.wait, queue))
                    continue
                self.claims_sent += 1
                try:
                    # A claim in flight is not cut short by stop(): it may already hold jobs.
                    with anyio.fail_after(self.timeout):
                        jobs = await self.broker.claim(queue, n, lease=self.lease, worker=self.worker_id)
                except Exception as exc:
                    slots.release(queue, n)
                    log.warning(
                        "claiming from %s failed (%s); retrying in %.2fs",
                        queue,
                        _describe(exc, self.timeout),
                        backoff,
                        extra={"action": "claim_error"},
                    )
                    await control.unless_stopping(partial(anyio.sleep, backoff))
                    backoff = min(backoff * 2, _MAX_BACKOFF)
                    continue
                backoff = _MIN_BACKOFF
                self.claims += 1
                self.dry = len(jobs) < n
                slots.release(queue, n - len(jobs))
                self.stats.claimed += len(jobs)
                for job in jobs:
                    slots.held[job.id] = Lease(job.id, job.token)
                    await send.send(job)
                if len(jobs) < n:
                    await self._wait_for_jobs()

    async def _wait_for_jobs(self) -> None:
        try:
            with anyio.fail_after(self.poll_interval + self.timeout):
                await self.control.unless_stopping(
                    partial(self.broker.wait_for_jobs, self.queue, self.poll_interval)
                )
        except Exception as exc:
            # The next claim will tell whether the broker is really gone.
            log.warning(
                "waiting for jobs on %s failed (%s)",
                self.queue,
                _describe(exc, self.poll_interval + self.timeout),
                extra={"action": "wait_error"},
            )
            await self.control.unless_stopping(partial(anyio.sleep, min(self.poll_interval, 1.0)))


def _describe(exc: Exception, deadline: float) -> str:
    if isinstance(exc, TimeoutError) and not str(exc):
        return f"no answer within {deadline:g}s"
    return str(exc) or type(exc).__name__
