"""The Redis broker: the protocol of :mod:`asynctask.brokers.base` on ``redis.asyncio``.

Every state change is one Lua command on one queue's keys (see ``keys.py`` for the layout and
``asynctask.lua`` for the commands), so it is atomic and touches a single Cluster slot. Lookups
by job id go through the ``P:ids`` hash (id -> queue), which lives outside the queues' slots:

* ``enqueue`` writes the id index *before* the job, so a crash in between leaves at worst an
  index entry without a job (read as "no such job", replaced by the next publish), never a job
  that cannot be found. Idempotency within a queue is atomic (inside the script); across
  queues it is checked first and is not atomic: two concurrent publishes of one id into two
  *different* queues may both succeed.
* ``complete``/``extend_leases``/``save`` find the queue from a per-broker cache filled by
  ``claim`` (so a worker's hot path adds no round trip), falling back to the index.
* ``list_jobs``, ``queue_stats`` and the maintenance calls visit every queue in ``P:queues``,
  one script or page per queue; a listing is therefore not a snapshot across queues (see
  ``listing.py`` for what a page costs).
* Workflow links are kept inside the scripts, atomically: an outcome's spawned children are
  created by the same ``complete`` call, and a finishing child updates its parent's ``pending``
  in the script that finishes it, wherever the parent's queue is. Those calls are the only ones
  that touch more than one queue's slot (so on Redis Cluster, parents and children would have to
  share a queue); this version supports standalone Redis (and Sentinel-style primaries) only.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any, Self, Unpack

import anyio
import msgspec
from redis.asyncio import Redis

from asynctask.brokers.base import Capabilities, Clock
from asynctask.brokers.redis import listing, waiting
from asynctask.brokers.redis.codec import decode_job
from asynctask.brokers.redis.connection import (
    Timeouts,
    blocking_client,
    check_eviction_policy,
    client_from_url,
    display_url,
    endpoint,
    split_prefix,
    translate,
)
from asynctask.brokers.redis.flow import configured_queues, find_unique, to_settings
from asynctask.brokers.redis.index import Index
from asynctask.brokers.redis.keys import DEFAULT_PREFIX, Keys
from asynctask.brokers.redis.scripts import Scripts
from asynctask.brokers.refcount import OpenCount
from asynctask.errors import ConfigurationError
from asynctask.flow import QueueSettings, RateLimit, TaskLimits, normalize_limits
from asynctask.models import Job, JobStatus, Lease, LeaseState, NewJob, Outcome, QueueStats, WorkerInfo

__all__ = ["RedisBroker"]

logger = logging.getLogger("asynctask.brokers.redis")
_WORKER = msgspec.json.Decoder(WorkerInfo)


class RedisBroker:
    """A broker on Redis (7.0+), through ``redis.asyncio``.

    Build it from a URL (``redis://[user:password@]host:port/db?prefix=myapp``, ``rediss://`` for
    TLS) or from an existing client, which must not decode responses::

        broker = RedisBroker.from_url("redis://localhost:6379/0?prefix=myapp")
        broker = RedisBroker(client=redis.asyncio.Redis(), prefix="myapp")

    Every key starts with ``prefix`` (default ``asynctask``). Jobs are durable as far as the
    server is (use AOF persistence, and ``maxmemory-policy noeviction``: :meth:`open` warns
    otherwise).

    Deadlines: a command waits ``socket_timeout`` seconds for its reply (default 10) and a
    connect ``socket_connect_timeout`` (default 5); then the connection is dropped and the
    command retried on a new one, so a connection that stops answering costs about one timeout.
    Set them as keyword arguments or in the URL (``?socket_timeout=5&socket_connect_timeout=2``);
    a client passed in keeps its own. The URL's path must be a database number.

    A job record that cannot be read (a field edited by hand, say) is quarantined, not lost: it
    ends ``failed`` with ``corrupt job record: ...`` and its neighbours run; reads return it as
    such (see :mod:`asynctask.brokers.rules`).
    """

    def __init__(
        self,
        client: Redis | None = None,
        *,
        url: str | None = None,
        prefix: str = DEFAULT_PREFIX,
        clock: Clock = time.time,
        socket_timeout: float | None = None,
        socket_connect_timeout: float | None = None,
    ) -> None:
        if client is not None and url is not None:
            raise ConfigurationError("pass either client= or url= to RedisBroker, not both")
        self._owns_client = client is None
        if client is None:
            url = url or "redis://localhost:6379/0"
            client = client_from_url(
                url, socket_timeout=socket_timeout, socket_connect_timeout=socket_connect_timeout
            )
        if client.connection_pool.connection_kwargs.get("decode_responses"):
            raise ConfigurationError(
                "RedisBroker needs a client with decode_responses=False (payloads are bytes)"
            )
        self.clock = clock
        self.keys = Keys(prefix)
        self.capabilities = Capabilities(push_wakeups=True, claim_on_wake=True)
        self._client = client
        self._blocking: Redis | None = None
        self._open = OpenCount(self._connect, self._disconnect)
        self._scripts = Scripts(client, self.keys)
        self._index = Index(client, self.keys)
        self._where = endpoint(client)
        self._display_url = display_url(url, client, prefix if prefix != DEFAULT_PREFIX else None)
        # job id -> queue of the jobs this broker claimed: saves a lookup per completion.
        self._queue_of: dict[str, str] = {}

    @classmethod
    def from_url(cls, url: str, *, clock: Clock = time.time, **timeouts: Unpack[Timeouts]) -> Self:
        """A broker for ``redis://`` / ``rediss://`` URLs; ``?prefix=`` sets the key prefix.
        ``timeouts``: ``socket_timeout`` and ``socket_connect_timeout`` (see the class)."""
        stripped, prefix = split_prefix(url)
        return cls(url=stripped, prefix=prefix or DEFAULT_PREFIX, clock=clock, **timeouts)

    @property
    def display_url(self) -> str:
        """The URL with any password redacted."""
        return self._display_url

    @property
    def is_open(self) -> bool:
        return self._open.is_open

    def __repr__(self) -> str:
        state = "open" if self._open.is_open else "closed"
        return f"<RedisBroker {self._display_url} {state}>"

    # --- lifecycle -------------------------------------------------------------------------

    async def open(self) -> None:
        """Connect and check the server (at the first open); warns if it may evict keys."""
        await self._open.open()

    async def close(self) -> None:
        """Disconnect at the last close; extra calls are harmless. A client passed in stays open."""
        await self._open.close()

    async def _connect(self) -> None:
        with translate(self._where, connecting=True):
            await self._client.ping()
            await check_eviction_policy(self._client, self._display_url)
        if self._blocking is None:
            self._blocking = blocking_client(self._client)

    async def _disconnect(self) -> None:
        blocking, self._blocking = self._blocking, None
        if blocking is not None:
            await blocking.aclose()
        if self._owns_client:
            await self._client.aclose()

    # --- helpers ---------------------------------------------------------------------------

    async def _queues_of(self, job_ids: Sequence[str]) -> dict[str, str]:
        """job id -> queue, from the claim cache or the index; unknown ids are left out."""
        found = {i: self._queue_of[i] for i in job_ids if i in self._queue_of}
        with translate(self._where):
            found.update(await self._index.owners([i for i in job_ids if i not in found]))
        return found

    async def _owner(self, job_id: str) -> str | None:
        with translate(self._where):
            return await self._index.owner(job_id)

    async def _queues(self) -> list[str]:
        with translate(self._where):
            return await self._index.queues()

    # --- publishing and claiming -----------------------------------------------------------

    async def enqueue(self, jobs: Sequence[NewJob], *, connection: Any = None) -> list[bool]:
        """Store jobs; ``False`` for each id that already exists (duplicates in the batch too)."""
        if connection is not None:
            raise ConfigurationError("the Redis broker does not support transactional publish (connection=)")
        created = [False] * len(jobs)
        first: dict[str, int] = {}
        for i, job in enumerate(jobs):
            first.setdefault(job.id, i)
        if not first:
            return created
        by_queue: dict[str, list[int]] = {}
        for i in first.values():
            by_queue.setdefault(jobs[i].queue, []).append(i)
        for queue in by_queue:
            self.keys.queue(queue)  # validate the names before anything is written
        now = self.clock()
        with translate(self._where):
            if len(by_queue) == 1:
                # The common case is one round trip: one script call, no pipeline.
                [(queue, indexes)] = by_queue.items()
                replies = [await self._scripts.enqueue(queue, now, [jobs[i] for i in indexes])]
            else:
                async with self._client.pipeline(transaction=False) as pipe:
                    for queue, indexes in by_queue.items():
                        await self._scripts.enqueue(queue, now, [jobs[i] for i in indexes], client=pipe)
                    replies = await pipe.execute()
        for indexes, flags in zip(by_queue.values(), replies, strict=True):
            for i, flag in zip(indexes, flags, strict=True):
                created[i] = bool(flag)
        return created

    async def claim(
        self, queue: str, limit: int, *, lease: float, worker: str, limits: TaskLimits | None = None
    ) -> list[Job]:
        """Claim up to ``limit`` ready jobs in priority order, leasing each for ``lease`` seconds,
        within the flow limits (checked in the same script)."""
        if limit <= 0:
            return []
        now = self.clock()
        with translate(self._where):
            rows, held, retry_at = await self._scripts.claim(
                queue, now, limit, now + lease, worker, normalize_limits(limits)
            )
        return await waiting.claimed(self, queue, rows, held, retry_at)

    async def _quarantine(self, queue: str, row: dict[bytes, bytes], problem: str) -> None:
        logger.warning(
            "quarantined a corrupt job record in queue %s: %s",
            queue,
            problem,
            extra={"action": "corrupt_job_record", "queue": queue},
        )
        with translate(self._where):
            await self._scripts.quarantine(queue, self.clock(), row[b"id"], problem)

    async def complete(self, outcomes: Sequence[Outcome]) -> list[bool]:
        """Apply outcomes, each only while its token is current."""
        applied = [False] * len(outcomes)
        owners = await self._queues_of([o.job_id for o in outcomes])
        now = self.clock()
        by_queue: dict[str, list[int]] = {}
        for i, o in enumerate(outcomes):
            if o.job_id in owners:
                by_queue.setdefault(owners[o.job_id], []).append(i)
        with translate(self._where):
            for queue, indexes in by_queue.items():
                flags = await self._scripts.complete(queue, now, [outcomes[i] for i in indexes])
                for i, flag in zip(indexes, flags, strict=True):
                    applied[i] = flag
        for o in outcomes:
            self._queue_of.pop(o.job_id, None)
        return applied

    async def extend_leases(self, leases: Sequence[Lease], *, lease: float) -> list[LeaseState]:
        """Extend leases still held with these tokens; ``LOST`` for the others."""
        states = [LeaseState.LOST] * len(leases)
        owners = await self._queues_of([held.job_id for held in leases])
        now = self.clock()
        by_queue: dict[str, list[int]] = {}
        for i, held in enumerate(leases):
            if held.job_id in owners:
                by_queue.setdefault(owners[held.job_id], []).append(i)
        with translate(self._where):
            for queue, indexes in by_queue.items():
                pairs = [(leases[i].job_id, leases[i].token) for i in indexes]
                answers = await self._scripts.extend(queue, now, now + lease, pairs)
                for i, answer in zip(indexes, answers, strict=True):
                    states[i] = answer
        for held, state in zip(leases, states, strict=True):
            if state is LeaseState.LOST:
                self._queue_of.pop(held.job_id, None)
        return states

    async def save(
        self, job_id: str, token: int, *, state: bytes | None = None, result: bytes | None = None
    ) -> bool:
        """Persist a running job's state and/or result, fenced by ``token``."""
        queue = (await self._queues_of([job_id])).get(job_id)
        if queue is None:
            return False
        with translate(self._where):
            return await self._scripts.save(queue, self.clock(), job_id, token, state, result)

    async def wait_for_jobs(self, queue: str, timeout: float, *, held: bool = False) -> None:
        """Return at once if a job is ready, else block on the queue's wake list until woken,
        the next scheduled job is due, or ``timeout``.

        ``held`` (flow control held the ready jobs back): drop the wake signals already sent
        and block for a new one or the timeout. A publish between the claim and this wait may
        lose its signal; the timeout (at most the poll interval) bounds that delay.
        """
        await waiting.wait_for_jobs(self, queue, timeout, held=held)

    async def wait_and_claim(
        self,
        queue: str,
        timeout: float,
        limit: int,
        *,
        lease: float,
        worker: str,
        limits: TaskLimits | None = None,
        stop: anyio.Event | None = None,
    ) -> list[Job]:
        """:meth:`wait_for_jobs`, then :meth:`claim`, the claim run by the server right after the
        wake-up (no round trip between them); ``stop`` ends the wait claiming nothing. See
        :mod:`.waiting`."""
        return await waiting.wait_and_claim(
            self, queue, timeout, limit, lease=lease, worker=worker, limits=limits, stop=stop
        )

    # --- maintenance -----------------------------------------------------------------------

    async def promote_due(self, limit: int) -> int:
        """Move due scheduled jobs to queued, across queues; returns how many."""
        moved = 0
        now = self.clock()
        for queue in await self._queues():
            if moved >= limit:
                break
            with translate(self._where):
                moved += await self._scripts.promote(queue, now, limit - moved)
        return moved

    async def rescue_expired(self, limit: int) -> int:
        """Re-queue (or fail, with no retries left) running jobs whose lease expired."""
        rescued = 0
        now = self.clock()
        for queue in await self._queues():
            if rescued >= limit:
                break
            with translate(self._where):
                rescued += await self._scripts.rescue(queue, now, limit - rescued)
        return rescued

    async def prune(self, limit: int) -> int:
        """Delete finished jobs past ``expires_at``; returns how many. Also removes the Lua
        libraries of asynctask versions gone for a day (:mod:`.libraries`)."""
        pruned = 0
        now = self.clock()
        with translate(self._where):
            await self._scripts.libraries.tend(now)
        for queue in await self._queues():
            if pruned >= limit:
                break
            with translate(self._where):
                ids = await self._scripts.prune(queue, now, limit - pruned)
                await self._scripts.unindex([(i, queue) for i in ids])
            pruned += len(ids)
        return pruned

    # --- inspection ------------------------------------------------------------------------

    async def get(self, job_id: str) -> Job | None:
        """The job, or ``None`` if it does not exist or has expired."""
        queue = await self._owner(job_id)
        if queue is None:
            return None
        with translate(self._where):
            return await self._index.read(queue, job_id, self.clock())

    async def list_jobs(
        self,
        *,
        status: JobStatus | None = None,
        queue: str | None = None,
        task: str | None = None,
        parent_id: str | None = None,
        limit: int = 100,
        before: tuple[float, str] | None = None,
    ) -> list[Job]:
        """Jobs matching every filter, newest first, strictly after ``before`` (keyset pages).

        See :mod:`asynctask.brokers.redis.listing` for what a page costs.
        """
        queues = [queue] if queue is not None else await self._queues()
        with translate(self._where):
            return await listing.list_jobs(
                self._client,
                self.keys,
                self._scripts,
                queues,
                self.clock(),
                status=status,
                task=task,
                parent_id=parent_id,
                limit=limit,
                before=before,
            )

    async def queue_stats(self) -> list[QueueStats]:
        """Every queue's live jobs by status: the queue set, then one pipeline of scripts."""
        queues = await self._queues()
        with translate(self._where):
            return await listing.queue_stats(self._client, self._scripts, queues, self.clock())

    async def record_worker(self, info: WorkerInfo, *, ttl: float) -> None:
        """Store the worker's record and drop dead workers' ones, in one script call."""
        now = self.clock()
        record = msgspec.json.encode(msgspec.structs.replace(info, heartbeat_at=now, expires_at=now + ttl))
        with translate(self._where):
            await self._scripts.worker_record(now, info.id, now + ttl, record)

    async def remove_worker(self, worker_id: str) -> None:
        with translate(self._where):
            await self._scripts.worker_remove(self.clock(), worker_id)

    async def list_workers(self) -> list[WorkerInfo]:
        with translate(self._where):
            records = await self._scripts.workers_list(self.clock())
        return [_WORKER.decode(record) for record in records]

    async def cancel(self, job_id: str, *, expires_at: float | None) -> Job | None:
        """Cancel a job that has not finished; a running one gets ``cancel_requested``."""
        queue = await self._owner(job_id)
        if queue is None:
            return None
        now = self.clock()
        with translate(self._where):
            raw = await self._scripts.cancel(queue, now, job_id, expires_at)
        return None if raw is None else decode_job(raw)

    async def _change(self, command: str, job_id: str) -> Job | None:
        queue = await self._owner(job_id)
        if queue is None:
            return None
        with translate(self._where):
            raw = await self._scripts.change(queue, self.clock(), command, job_id)
        return None if raw is None else decode_job(raw)

    async def pause(self, job_id: str) -> Job | None:
        """Park a scheduled or queued job as ``paused``; ask a running one to pause."""
        return await self._change("pause", job_id)

    async def resume(self, job_id: str) -> Job | None:
        """Queue a ``paused`` job again."""
        return await self._change("resume", job_id)

    async def retry(self, job_id: str) -> Job | None:
        """Queue a failed or cancelled job again with a fresh attempt count."""
        return await self._change("retry", job_id)

    # --- flow control ------------------------------------------------------------------------

    async def find_unique(self, unique_key: str) -> Job | None:
        """The unfinished job holding ``unique_key``, or ``None``."""
        with translate(self._where):
            return await find_unique(self._client, self.keys, self._index, unique_key, self.clock())

    async def queue_settings(self, queue: str) -> QueueSettings:
        """The queue's settings, from its flow hash (the defaults when it has none)."""
        with translate(self._where):
            raw: dict[bytes, bytes] = await self._client.hgetall(self.keys.queue(queue).flow)  # type: ignore[assignment]
        return to_settings(raw)

    async def configured_queues(self) -> dict[str, QueueSettings]:
        """Every queue with a flow hash."""
        queues = await self._queues()
        with translate(self._where):
            return await configured_queues(self._client, self.keys, queues)

    async def set_queue_limits(
        self, queue: str, *, concurrency: int | None, rate: RateLimit | None
    ) -> QueueSettings:
        """Replace the queue's limits; wakes its idle workers."""
        with translate(self._where):
            raw = await self._scripts.set_flow(queue, self.clock(), limits=(concurrency, rate))
        return to_settings(raw)

    async def set_queue_paused(self, queue: str, paused: bool) -> QueueSettings:
        """Pause or resume the queue; wakes its idle workers."""
        with translate(self._where):
            raw = await self._scripts.set_flow(queue, self.clock(), paused=paused)
        return to_settings(raw)

    async def delete(self, job_id: str) -> bool:
        """Delete a job in any status; ``False`` if it did not exist."""
        queue = await self._owner(job_id)
        if queue is None:
            return False
        with translate(self._where):
            deleted = await self._scripts.delete(queue, self.clock(), job_id)
            await self._scripts.unindex([(job_id, queue)])
        self._queue_of.pop(job_id, None)
        return deleted
