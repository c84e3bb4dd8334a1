"""Waiting for work: a change stream on replica sets and clusters, polling elsewhere.

A wait returns at once if a job is ready (queued, or scheduled and due; the claim that follows
promotes the latter). Otherwise it waits for the earliest of: the next scheduled job coming due, the
timeout, and, with change streams, a job of the queue entering the ready set (an insert or
update leaving it ``queued`` or ``scheduled``). The stream is opened *before* looking, so a job
that becomes ready after the look still ends the wait. Without change streams the wait looks
again every ``poll_interval`` seconds. A wait may end early: callers then simply claim.

A *held* wait (the last claim was held back by flow control) does not return because jobs are
ready: it returns on a wake-up or at the timeout. Its wake-ups are a job of the queue entering the
ready set (with change streams), a change of the queue's settings document (a change stream on
``<prefix>.queues``, or, polling, a read of it every ``poll_interval``), and any settings change
made through this broker (an in-process event, at once).
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

    def __init__(self, coll: Any, clock: Clock, *, poll_interval: float, queues: Any = None) -> None:
        self.coll = coll
        self.queues = queues
        self.clock = clock
        self.poll_interval = poll_interval
        #: Use change streams (decided at open); cleared if a stream fails, until the next open.
        self.streams = False
        #: Held waits of this process, by queue: set by :meth:`wake`.
        self._events: dict[str, anyio.Event] = {}

    def wake(self, queue: str) -> None:
        """End this process's held waits on ``queue`` (its settings changed)."""
        event = self._events.pop(queue, None)
        if event is not None:
            event.set()

    async def wait_held(self, queue: str, timeout: float) -> None:
        """A held wait: return on a wake-up or after ``timeout`` seconds, not because jobs are ready."""
        event = self._events.get(queue)
        if event is None:
            event = self._events[queue] = anyio.Event()
        with anyio.move_on_after(max(timeout, 0.0)):
            async with anyio.create_task_group() as tg:

                async def first(fn: Any, *args: Any) -> None:
                    await fn(*args)
                    tg.cancel_scope.cancel()

                tg.start_soon(first, event.wait)
                tg.start_soon(first, self._watch_settings, queue)
                if self.streams:
                    tg.start_soon(first, self._watch_jobs, queue)

    async def _watch_settings(self, queue: str) -> None:
        """Return when the queue's settings document changes."""
        if self.queues is None:
            await anyio.sleep_forever()
        if self.streams:
            try:
                pipeline = [{"$match": {"documentKey._id": queue}}, {"$project": {"_id": 1}}]
                stream = await self.queues.watch(pipeline, max_await_time_ms=_MAX_AWAIT_MS)
                async with stream:
                    while await stream.try_next() is None:
                        pass
                return
            except PyMongoError:
                pass  # poll instead
        before = await self.queues.find_one({"_id": queue})
        while True:
            await anyio.sleep(self.poll_interval)
            if await self.queues.find_one({"_id": queue}) != before:
                return

    async def _watch_jobs(self, queue: str) -> None:
        """Return when a job of the queue enters the ready set (change streams only)."""
        try:
            stream = await self.coll.watch(
                self._pipeline(queue), full_document="updateLookup", max_await_time_ms=_MAX_AWAIT_MS
            )
            async with stream:
                while await stream.try_next() is None:
                    pass
        except PyMongoError:
            await anyio.sleep_forever()  # the settings watch and the timeout remain

    @staticmethod
    def _pipeline(queue: str) -> list[dict[str, Any]]:
        return [
            {
                "$match": {
                    "operationType": {"$in": ["insert", "update", "replace"]},
                    "fullDocument.queue": queue,
                    "fullDocument.phase": {"$exists": True},
                }
            },
            {"$project": {"_id": 1}},
        ]

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
        stream = await self.coll.watch(
            self._pipeline(queue), full_document="updateLookup", max_await_time_ms=_MAX_AWAIT_MS
        )
        async with stream:
            until_due = await self._look(queue)
            if until_due == 0.0:
                return
            with anyio.move_on_after(until_due if until_due is not None else float("inf")):
                while await stream.try_next() is None:
                    pass
