"""Reads that cross queues: the ``P:ids`` index (job id -> queue) and the queue set.

These are plain commands, not scripts: each touches either the global keys or one queue's
keys, so none needs a multi-slot script. They are reads (or idempotent index writes), so
seeing the keys at slightly different moments is harmless: a listing is not a snapshot.
"""

from __future__ import annotations

from collections.abc import Sequence

from redis.asyncio import Redis

from asynctask.brokers.redis.codec import decode_job
from asynctask.brokers.redis.keys import Keys
from asynctask.models import Job

__all__ = ["Index", "visible"]


def visible(raw: dict[bytes, bytes], now: float) -> Job | None:
    """The job in ``raw`` (``HGETALL`` output), or ``None`` if absent or past ``expires_at``."""
    if not raw:
        return None
    job = decode_job(raw)
    if job.expires_at is not None and job.expires_at <= now:
        return None
    return job


class Index:
    """Cross-queue lookups under one key prefix. Callers translate redis-py errors."""

    def __init__(self, client: Redis, keys: Keys) -> None:
        self._client = client
        self._keys = keys

    async def queues(self) -> list[str]:
        """Every queue ever published to."""
        members: set[bytes] = await self._client.smembers(self._keys.queues)  # type: ignore[assignment]
        return sorted(m.decode() for m in members)

    async def owners(self, job_ids: Sequence[str]) -> dict[str, str]:
        """job id -> queue for the ids the index knows."""
        if not job_ids:
            return {}
        ids = list(dict.fromkeys(job_ids))
        owners: list[bytes | None] = await self._client.hmget(self._keys.ids, ids)  # type: ignore[assignment]
        return {i: q.decode() for i, q in zip(ids, owners, strict=True) if q is not None}

    async def owner(self, job_id: str) -> str | None:
        """The queue of ``job_id``, if the index knows it."""
        owner: bytes | None = await self._client.hget(self._keys.ids, job_id)  # type: ignore[assignment]
        return None if owner is None else owner.decode()

    async def read(self, queue: str, job_id: str, now: float) -> Job | None:
        """One job, or ``None`` if absent or expired."""
        key = self._keys.queue(queue).job(job_id)
        raw: dict[bytes, bytes] = await self._client.hgetall(key)  # type: ignore[assignment]
        return visible(raw, now)
