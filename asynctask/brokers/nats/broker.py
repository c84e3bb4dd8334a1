"""The NATS JetStream broker: the protocol of :mod:`asynctask.brokers.base` on nats-py.

The design, its reasons and its limits are in the package docstring
(:mod:`asynctask.brokers.nats`); this class wires the parts together: a :class:`Connection`, the
:class:`Store` of job records, and, once a call needs it, the :class:`Index` and the
:class:`Watch` that keeps it current.
"""

from __future__ import annotations

import heapq
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any, Self
from urllib.parse import parse_qsl, urlencode

import anyio
import msgspec

from asynctask.brokers import transitions
from asynctask.brokers.base import Capabilities, Clock
from asynctask.brokers.nats import claiming, flow, manage, outcomes, publishing, unique, workers
from asynctask.brokers.nats.client import Connection
from asynctask.brokers.nats.config import NatsConfig
from asynctask.brokers.nats.index import Index
from asynctask.brokers.nats.layout import DEFAULT_PREFIX, Layout, validate_prefix
from asynctask.brokers.nats.store import Store
from asynctask.brokers.nats.tx import KeyedLock
from asynctask.brokers.nats.watch import Watch
from asynctask.brokers.refcount import OpenCount
from asynctask.errors import ConfigurationError
from asynctask.flow import QueueSettings, RateLimit, TaskLimits, normalize_limits
from asynctask.models import (
    Job,
    JobStatus,
    Lease,
    LeaseState,
    NewJob,
    Outcome,
    QueueStats,
    WorkerInfo,
    zero_counts,
)

__all__ = ["NatsBroker"]


class NatsBroker:
    """A broker on NATS JetStream (nats-server 2.12.1+), through nats-py.

    Build it from a URL; keyword arguments override the URL's options::

        broker = NatsBroker.from_url("nats://app:secret@n1:4222,n2:4222?prefix=billing&replicas=3")
        broker = NatsBroker("nats://localhost:4222", prefix="billing")

    Every job record lives in one key-value bucket, ``<prefix>_jobs``, created on first open with
    ``replicas`` replicas.
    """

    def __init__(
        self,
        url: str = "nats://localhost:4222",
        *,
        prefix: str | None = None,
        replicas: int | None = None,
        clock: Clock = time.time,
    ) -> None:
        config = NatsConfig.from_url(url)
        if prefix is not None:
            config = _replace(config, prefix=validate_prefix(prefix))
        if replicas is not None:
            if not 1 <= replicas <= 5:
                raise ConfigurationError(f"replicas must be 1 to 5, got {replicas!r}")
            config = _replace(config, replicas=replicas)
        self.config = config
        self.clock = clock
        self.layout = Layout(config.prefix)
        self.capabilities = Capabilities(push_wakeups=True)
        self._conn = Connection(config)
        self.store = Store(self._conn, self.layout, replicas=config.replicas)
        self._index: Index | None = None
        self._watch: Watch | None = None
        self._open = OpenCount(self._connect, self._disconnect)
        self._locks = KeyedLock()
        #: Jobs whose outcome this broker is writing now (see extend_leases), with a count each.
        self._completing: Counter[str] = Counter()
        self._display_url = _display(config)

    @classmethod
    def from_url(cls, url: str, *, clock: Clock = time.time) -> Self:
        """A broker for ``nats://`` / ``tls://`` URLs (see :mod:`asynctask.brokers.nats.config`)."""
        return cls(url, clock=clock)

    @property
    def display_url(self) -> str:
        """The URL with any password or token redacted."""
        return self._display_url

    def __repr__(self) -> str:
        state = "open" if self.is_open else "closed"
        indexed = f" indexed={len(self._index)}" if self._index is not None else ""
        return f"<NatsBroker {self._display_url} bucket={self.layout.bucket} {state}{indexed}>"

    # --- lifecycle -------------------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        """Whether :meth:`open` was called more often than :meth:`close`."""
        return self._open.is_open

    async def open(self) -> None:
        """Connect and create the job bucket if it is missing. Opens are counted."""
        await self._open.open()

    async def close(self) -> None:
        """Undo one :meth:`open`; the last one stops the watch and disconnects."""
        await self._open.close()

    async def _connect(self) -> None:
        try:
            await self._conn.connect()
            await self.store.ensure()
        except BaseException:
            await self._conn.close()
            raise

    async def _disconnect(self) -> None:
        watch, self._watch, self._index = self._watch, None, None
        if watch is not None:
            await watch.close()
        await self._conn.close()

    async def _indexed(self) -> Index:
        """The index, started on first use and checked to be current before each use."""
        if self._watch is None or self._index is None:
            self._index = Index()
            self._watch = Watch(self._conn, self.layout, self._index)
            self._conn.on_reconnect = self._watch.invalidate
        await self._watch.ensure()
        return self._index

    # --- publishing and claiming -----------------------------------------------------------

    async def enqueue(self, jobs: Sequence[NewJob], *, connection: Any = None) -> list[bool]:
        """Store jobs; ``False`` for each id that already exists (duplicates in the batch too)."""
        if connection is not None:
            raise ConfigurationError("the NATS broker does not support transactional publish (connection=)")
        if not jobs:
            return []
        return await publishing.enqueue(self.store, self._index, jobs, self.clock())

    async def claim(
        self, queue: str, limit: int, *, lease: float, worker: str, limits: TaskLimits | None = None
    ) -> list[Job]:
        """Claim up to ``limit`` ready jobs in priority order, leasing each for ``lease`` seconds,
        within the queue's settings and the tasks' ``limits`` (:mod:`.flow`)."""
        if limit <= 0:
            return []
        index = await self._indexed()
        task_limits = normalize_limits(limits)
        if task_limits or flow.configured(index, self.layout, queue):
            return await flow.claim(
                self.store, index, queue, limit, lease=lease, now=self.clock(), limits=task_limits
            )
        return await claiming.claim(self.store, index, queue, limit, lease=lease, now=self.clock())

    async def complete(self, outcomes_: Sequence[Outcome]) -> list[bool]:
        """Apply outcomes, each only while its token is current."""
        if not outcomes_:
            return []
        ids = [o.job_id for o in outcomes_]
        self._completing.update(ids)
        try:
            return await outcomes.complete(self.store, self._index, outcomes_, self.clock(), self._locks)
        finally:
            self._completing.subtract(ids)
            for job_id in ids:
                if self._completing[job_id] <= 0:
                    del self._completing[job_id]

    async def extend_leases(self, leases: Sequence[Lease], *, lease: float) -> list[LeaseState]:
        """Extend leases still held with these tokens; ``LOST`` for the others.

        A job whose outcome this broker is writing at the moment is answered ``OK`` and left
        alone: its record is the fence of that outcome's transaction, and a heartbeat rewriting
        it every few milliseconds would make a long transaction (an outcome spawning hundreds of
        children reads them all first) conflict on every attempt. Its lease still runs until the
        outcome applies, or is extended by the next heartbeat if writing it failed.
        """
        if not leases:
            return []
        busy = self._completing
        states = [LeaseState.OK] * len(leases)
        rest = [i for i, held in enumerate(leases) if held.job_id not in busy]
        if rest:
            extended = await outcomes.extend_leases(
                self.store, self._index, [leases[i] for i in rest], lease=lease, now=self.clock()
            )
            for i, state in zip(rest, extended, strict=True):
                states[i] = state
        return states

    async def save(
        self, job_id: str, token: int, *, state: bytes | None = None, result: bytes | None = None
    ) -> bool:
        """Persist a running job's state and/or result, fenced by ``token``."""
        return await outcomes.save(self.store, self._index, job_id, token, state=state, result=result)

    async def wait_for_jobs(self, queue: str, timeout: float, *, held: bool = False) -> None:
        """Return when a job of ``queue`` may be ready: at once if one is (unless ``held``: flow
        control held the last claim back), else when the watch delivers one or a change of the
        queue's settings, the next scheduled job is due, or ``timeout`` passes."""
        index = await self._indexed()
        now = self.clock()
        if not held and index.has_ready(queue, now):
            return
        next_run = index.next_run_at(queue)
        if next_run is not None:
            timeout = min(timeout, next_run - now)
        if timeout <= 0:
            return
        event = index.event(queue)
        with anyio.move_on_after(timeout):
            await event.wait()

    # --- maintenance -----------------------------------------------------------------------

    async def promote_due(self, limit: int) -> int:
        """Move due scheduled jobs to queued, across queues; returns how many."""
        index = await self._indexed()
        return await claiming.promote_due(self.store, index, limit, self.clock())

    async def rescue_expired(self, limit: int) -> int:
        """Re-queue (or fail, with no retries left) running jobs whose lease expired."""
        index = await self._indexed()
        return await outcomes.rescue_expired(self.store, index, limit, self.clock())

    async def prune(self, limit: int) -> int:
        """Delete finished jobs past ``expires_at``; returns how many."""
        index = await self._indexed()
        return await manage.prune(self.store, index, limit, self.clock())

    # --- inspection ------------------------------------------------------------------------

    async def get(self, job_id: str) -> Job | None:
        """The job as stored now, or ``None`` if it does not exist or has expired."""
        job = (await self.store.read(job_id)).job
        return job if transitions.live(job, self.clock()) else None

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
        """Jobs matching every filter, newest first (``created_at``, then ``id``, descending),
        strictly after ``before``: one pass over the index in memory, no round trip per job."""
        index = await self._indexed()
        now = self.clock()
        entries = index.children(parent_id) if parent_id is not None else index.jobs()
        found = [
            e.job
            for e in entries
            if e.job is not None
            and (status is None or e.job.status is status)
            and (queue is None or e.job.queue == queue)
            and (task is None or e.job.task == task)
            and (parent_id is None or e.job.parent_id == parent_id)
            and (before is None or (e.job.created_at, e.job.id) < before)
            and transitions.live(e.job, now)
        ]
        return heapq.nlargest(limit, found, key=lambda job: (job.created_at, job.id))

    # --- the worker registry -----------------------------------------------------------------

    async def record_worker(self, info: WorkerInfo, *, ttl: float) -> None:
        """Write the worker's record (one publish); the server drops it a minute after it expires."""
        await workers.record(self._conn, self.layout, info, self.clock(), ttl)

    async def remove_worker(self, worker_id: str) -> None:
        await workers.remove(self._conn, self.layout, worker_id)

    async def list_workers(self) -> list[WorkerInfo]:
        """The live workers' records: the stream's worker subjects, then each one's last record."""
        return await workers.list_live(self._conn, self.layout, self.clock())

    async def queue_stats(self) -> list[QueueStats]:
        """Every queue's live jobs by status and its oldest ready job, counted from the index."""
        index = await self._indexed()
        now = self.clock()
        stats: dict[str, tuple[dict[JobStatus, int], list[float]]] = {}
        for entry in index.jobs():
            job = entry.job
            if job is None or not transitions.live(job, now):
                continue
            counts, ready = stats.setdefault(job.queue, (zero_counts(), []))
            counts[job.status] += 1
            if job.status is JobStatus.QUEUED or (job.status is JobStatus.SCHEDULED and job.run_at <= now):
                ready.append(job.run_at)
        return [
            QueueStats(queue=queue, counts=counts, oldest_ready_at=min(ready, default=None))
            for queue, (counts, ready) in sorted(stats.items())
        ]

    async def cancel(self, job_id: str, *, expires_at: float | None) -> Job | None:
        """Cancel a job that has not finished; a running one gets ``cancel_requested``."""
        return await manage.cancel(self.store, self._index, job_id, expires_at=expires_at, now=self.clock())

    async def pause(self, job_id: str) -> Job | None:
        """Park a scheduled or queued job as ``paused``; ask a running one to pause."""
        return await manage.pause(self.store, self._index, job_id, now=self.clock())

    async def resume(self, job_id: str) -> Job | None:
        """Queue a ``paused`` job again."""
        return await manage.resume(self.store, self._index, job_id, now=self.clock())

    async def retry(self, job_id: str) -> Job | None:
        """Queue a failed or cancelled job again with a fresh attempt count."""
        return await manage.retry(self.store, self._index, job_id, now=self.clock())

    async def delete(self, job_id: str) -> bool:
        """Delete a job in any status; ``False`` if it did not exist."""
        return await manage.delete(self.store, self._index, job_id)

    # --- flow control --------------------------------------------------------------------------

    async def find_unique(self, unique_key: str) -> Job | None:
        """The unfinished job holding ``unique_key`` (its record and holder read from the server)."""
        return await unique.find(self.store, self._index, unique_key, self.clock())

    async def queue_settings(self, queue: str) -> QueueSettings:
        """The queue's settings as stored now (``QueueSettings()`` for one never configured)."""
        return await flow.queue_settings(self.store, queue)

    async def configured_queues(self) -> dict[str, QueueSettings]:
        """Every queue whose settings differ from the defaults, by name (from the index)."""
        return flow.configured_queues(await self._indexed())

    async def set_queue_limits(
        self, queue: str, *, concurrency: int | None, rate: RateLimit | None
    ) -> QueueSettings:
        """Replace the queue's limits, keep its pause; every worker's watch sees it and wakes."""
        return await flow.change_settings(
            self.store, self._index, queue, lambda s: QueueSettings(s.paused, concurrency, rate)
        )

    async def set_queue_paused(self, queue: str, paused: bool) -> QueueSettings:
        """Pause or resume claiming from the queue, keep its limits; wakes its workers."""
        return await flow.change_settings(
            self.store, self._index, queue, lambda s: QueueSettings(paused, s.concurrency, s.rate)
        )


def _replace(config: NatsConfig, **changes: Any) -> NatsConfig:
    return msgspec.structs.replace(config, **changes)


def _display(config: NatsConfig) -> str:
    """The redacted URL, with the prefix and replica count actually used."""
    base, _, query = config.display_url.partition("?")
    options = [(k, v) for k, v in parse_qsl(query, keep_blank_values=True) if k not in ("prefix", "replicas")]
    if config.prefix != DEFAULT_PREFIX:
        options.append(("prefix", config.prefix))
    if config.replicas != 1:
        options.append(("replicas", str(config.replicas)))
    return base + ("?" + urlencode(options, safe="*/") if options else "")
