"""Flow control on Redis: queue settings, unique-job look-ups, and the claim's answer.

The rules themselves run inside the Lua scripts (``asynctask.lua``, "flow control"): the claim
checks the queue's flow hash and the tasks' limits in the same script that leases the jobs, so
they are atomic with it. A queue without a flow hash, claimed without task limits, takes the
plain loop: one ``EXISTS`` more than before, inside the script (no extra round trip).

Task concurrency is counted from ``P:task:<t>:running``, which records the jobs claimed under the
task's limit: jobs of the task that a worker without the limit claimed are not counted (every
worker running a task declares the same limits, as it runs the same code).
"""

from __future__ import annotations

from collections.abc import Mapping

from redis.asyncio import Redis

from asynctask.brokers.redis.index import Index
from asynctask.brokers.redis.keys import Keys
from asynctask.flow import QueueSettings, RateLimit
from asynctask.models import Job

__all__ = ["UNFINISHED", "configured_queues", "find_unique", "to_settings"]

UNFINISHED = frozenset({"scheduled", "queued", "running", "waiting", "paused"})


def to_settings(raw: Mapping[bytes, bytes]) -> QueueSettings:
    """A queue's settings from its flow hash (empty: the defaults)."""
    rate = None
    if b"rate_count" in raw:
        rate = RateLimit(int(raw[b"rate_count"]), per=float(raw[b"rate_per"]), burst=int(raw[b"rate_burst"]))
    concurrency = raw.get(b"concurrency")
    return QueueSettings(
        paused=raw.get(b"paused") == b"1",
        concurrency=None if concurrency is None else int(concurrency),
        rate=rate,
    )


async def configured_queues(client: Redis, keys: Keys, queues: list[str]) -> dict[str, QueueSettings]:
    """The settings of every queue that has a flow hash."""
    async with client.pipeline(transaction=False) as pipe:
        for queue in queues:
            pipe.hgetall(keys.queue(queue).flow)
        hashes: list[dict[bytes, bytes]] = await pipe.execute()
    return {queue: to_settings(raw) for queue, raw in zip(queues, hashes, strict=True) if raw}


async def find_unique(client: Redis, keys: Keys, index: Index, unique_key: str, now: float) -> Job | None:
    """The unfinished job holding ``unique_key``: the one ``P:unique`` names, if it still holds it."""
    raw_id: bytes | None = await client.hget(keys.unique, unique_key)  # type: ignore[assignment]
    if raw_id is None:
        return None
    job_id = raw_id.decode()
    queue = await index.owner(job_id)
    job = None if queue is None else await index.read(queue, job_id, now)
    if job is None or job.unique_key != unique_key or job.status.value not in UNFINISHED:
        return None
    return job
