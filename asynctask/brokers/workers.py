"""The worker registry of brokers that keep it in process memory (the in-memory broker)."""

from __future__ import annotations

import msgspec

from asynctask.brokers.base import Clock
from asynctask.models import WorkerInfo

__all__ = ["WorkerCalls", "WorkerTable"]


class WorkerTable:
    """Worker records by id, each gone once its ``expires_at`` has passed on ``clock``."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._workers: dict[str, WorkerInfo] = {}

    def record(self, info: WorkerInfo, ttl: float) -> None:
        now = self.clock()
        self._drop_dead(now)
        self._workers[info.id] = msgspec.structs.replace(info, heartbeat_at=now, expires_at=now + ttl)

    def remove(self, worker_id: str) -> None:
        self._workers.pop(worker_id, None)

    def live(self) -> list[WorkerInfo]:
        now = self.clock()
        return sorted((w for w in self._workers.values() if w.expires_at > now), key=lambda w: w.id)

    def _drop_dead(self, now: float) -> None:
        for worker_id in [w.id for w in self._workers.values() if w.expires_at <= now]:
            del self._workers[worker_id]


class WorkerCalls:
    """The broker protocol's worker-registry calls, mixed into the memory broker."""

    _workers: WorkerTable

    async def record_worker(self, info: WorkerInfo, *, ttl: float) -> None:
        self._workers.record(info, ttl)

    async def remove_worker(self, worker_id: str) -> None:
        self._workers.remove(worker_id)

    async def list_workers(self) -> list[WorkerInfo]:
        return self._workers.live()
