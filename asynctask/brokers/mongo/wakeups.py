"""Waiting for work: a change stream on replica sets and clusters, polling elsewhere.

A wait returns at once if a job is ready (queued, or scheduled and due; the claim that follows
promotes the latter). Otherwise it waits for the earliest of: the next scheduled job coming due, the
timeout, and, with change streams, a job of the queue entering the ready set (an insert or
update leaving it ``queued`` or ``scheduled``). The stream is opened *before* looking, so a job
that becomes ready after the look still ends the wait. Without change streams the wait looks
again every ``poll_interval`` seconds. A wait may end early: callers then simply claim.
"""

from __future__ import annotations

import logging
from typing import Any

import anyio
from pymongo.errors import PyMongoError

from asynctask.brokers.base import Clock
from asynctask.brokers.mongo.documents import PHASE_QUEUED, PHASE_SCHEDULED

__all__ = ["Waiter"]

logger = logging.getLogger("asynctask.brokers.mongo")

# The longest a change-stream getMore blocks on the server, in ms; the wait loops until done.
_MAX_AWAIT_MS = 1000


class Waiter:
    """``wait_for_jobs`` for one broker."""

    def __init__(self, coll: Any, clock: Clock, *, poll_interval: float) -> None:
        self.coll = coll
        self.clock = clock
        self.poll_interval = poll_interval
        #: Use change streams (decided at open); cleared if a stream fails, until the next open.
        self.streams = False

    async def _look(self, queue: str) -> float | None:
        """``0.0`` if a job is ready, else seconds until the next one is due (``None``: none).

        No write, and no sort when a job is queued: any queued job will do.
        """
        if await self.coll.find_one({"queue": queue, "phase": PHASE_QUEUED}, projection={"_id": 1}):
            return 0.0
        first = await self.coll.find_one(
            {"queue": queue, "phase": PHASE_SCHEDULED}, projection={"run_at": 1}, sort=[("run_at", 1)]
        )
        if first is None:
            return None
        due_in: float = first["run_at"] - self.clock()
        return max(due_in, 0.0)

    async def wait(self, queue: str, timeout: float) -> None:
        """Return when a job of ``queue`` may be ready, or after ``timeout`` seconds."""
        with anyio.move_on_after(max(timeout, 0.0)):
            if self.streams:
                try:
                    await self._wait_stream(queue)
                    return
                except PyMongoError as exc:
                    self.streams = False
                    logger.warning(
                        "change stream failed (%s); idle workers poll from now on",
                        exc,
                        extra={"action": "mongo_change_stream_failed"},
                    )
            await self._wait_poll(queue)

    async def _wait_poll(self, queue: str) -> None:
        while True:
            until_due = await self._look(queue)
            if until_due == 0.0:
                return
            if until_due is not None and until_due <= self.poll_interval:
                await anyio.sleep(until_due)
                return
            await anyio.sleep(self.poll_interval)

    async def _wait_stream(self, queue: str) -> None:
        pipeline = [
            {
                "$match": {
                    "operationType": {"$in": ["insert", "update", "replace"]},
                    "fullDocument.queue": queue,
                    "fullDocument.phase": {"$exists": True},
                }
            },
            {"$project": {"_id": 1}},
        ]
        stream = await self.coll.watch(
            pipeline, full_document="updateLookup", max_await_time_ms=_MAX_AWAIT_MS
        )
        async with stream:
            until_due = await self._look(queue)
            if until_due == 0.0:
                return
            with anyio.move_on_after(until_due if until_due is not None else float("inf")):
                while await stream.try_next() is None:
                    pass
