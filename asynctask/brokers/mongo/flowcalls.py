"""The broker protocol's flow-control calls, mixed into :class:`~asynctask.brokers.mongo.MongoBroker`:
queue settings (:mod:`~asynctask.brokers.mongo.flow`) and unique-job look-ups
(:mod:`~asynctask.brokers.mongo.unique`)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from asynctask.brokers.mongo import unique
from asynctask.brokers.mongo.documents import to_job
from asynctask.brokers.mongo.flow import MongoFlow
from asynctask.brokers.mongo.wakeups import Waiter
from asynctask.errors import ConfigurationError
from asynctask.flow import QueueSettings, RateLimit
from asynctask.models import Job

__all__ = ["FlowCalls"]


class FlowCalls:
    """Queue settings and unique keys of a :class:`~asynctask.brokers.mongo.MongoBroker`."""

    _flowctl: MongoFlow | None
    _waiter: Waiter | None
    _display: str
    clock: Callable[[], float]
    _translated: Callable[[], AbstractContextManager[None]]

    @property
    def collection(self) -> Any: ...  # provided by the broker

    def _flow(self) -> MongoFlow:
        if self._flowctl is None:
            raise ConfigurationError(f"the MongoDB broker {self._display} is not open")
        return self._flowctl

    async def find_unique(self, unique_key: str) -> Job | None:
        """The unfinished job holding ``unique_key``, or ``None``."""
        with self._translated():
            doc = await unique.holder(self.collection, unique_key, self.clock())
        return None if doc is None else to_job(doc)

    async def queue_settings(self, queue: str) -> QueueSettings:
        """The queue's settings (the defaults when it has no document)."""
        with self._translated():
            return await self._flow().settings(queue)

    async def configured_queues(self) -> dict[str, QueueSettings]:
        """Every queue whose settings differ from the defaults, by name."""
        with self._translated():
            return await self._flow().configured()

    async def set_queue_limits(
        self, queue: str, *, concurrency: int | None, rate: RateLimit | None
    ) -> QueueSettings:
        """Replace the queue's limits, keep its pause; wakes its idle workers."""
        with self._translated():
            settings = await self._flow().set_limits(queue, concurrency, rate)
        self._wake(queue)
        return settings

    async def set_queue_paused(self, queue: str, paused: bool) -> QueueSettings:
        """Pause or resume the queue, keep its limits; wakes its idle workers."""
        with self._translated():
            settings = await self._flow().set_paused(queue, paused)
        self._wake(queue)
        return settings

    def _wake(self, queue: str) -> None:
        # This process's held waits at once; other processes' through the change stream on the
        # settings document, or their next poll of it (see asynctask.brokers.mongo.wakeups).
        if self._waiter is not None:
            self._waiter.wake(queue)
