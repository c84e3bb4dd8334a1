"""The MongoDB broker, on PyMongo's native asyncio client (``AsyncMongoClient``).

Every job is one document of ``<prefix>.jobs`` (see :mod:`~asynctask.brokers.mongo.indexes`).
Single-job changes are one fenced single-document update; batches travel as one bulk write;
events that touch several jobs (workflows) are described in
:mod:`~asynctask.brokers.mongo.workflows`. See :class:`MongoBroker`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, Self

from pymongo import DESCENDING, ReturnDocument

from asynctask.brokers.base import Capabilities, Clock, Migration
from asynctask.brokers.mongo import changes, claims, unique
from asynctask.brokers.mongo.config import DEFAULT_DATABASE, DEFAULT_PREFIX, parse_url, validate_prefix
from asynctask.brokers.mongo.connection import make_client, supports_change_streams, supports_transactions
from asynctask.brokers.mongo.creation import create_jobs
from asynctask.brokers.mongo.documents import to_job
from asynctask.brokers.mongo.errors import translate
from asynctask.brokers.mongo.flow import MongoFlow, locks_collection, queues_collection
from asynctask.brokers.mongo.flowcalls import FlowCalls
from asynctask.brokers.mongo.indexes import jobs_collection, migrate
from asynctask.brokers.mongo.leases import extend, rescue
from asynctask.brokers.mongo.outcomes import held
from asynctask.brokers.mongo.stats import queue_stats
from asynctask.brokers.mongo.wakeups import Waiter
from asynctask.brokers.mongo.workers import WorkerCalls, workers_collection
from asynctask.brokers.mongo.workflows import Workflows
from asynctask.brokers.refcount import OpenCount
from asynctask.errors import ConfigurationError
from asynctask.flow import TaskLimits, normalize_limits
from asynctask.models import Job, JobStatus, Lease, LeaseState, NewJob, Outcome, QueueStats

__all__ = ["MongoBroker"]

_AFTER = ReturnDocument.AFTER
_NEWEST_FIRST = [("created_at", DESCENDING), ("_id", DESCENDING)]


def _pick(explicit: Any, from_url: Any, default: Any) -> Any:
    if explicit is not None:
        return explicit
    return default if from_url is None else from_url


class MongoBroker(FlowCalls, WorkerCalls):
    """A broker keeping jobs in ``<prefix>.jobs`` of a MongoDB database (MongoDB 4.4+).

    Build it from a URL, ``mongodb://user:pass@host:27017/db?replicaSet=rs0&prefix=app``
    (``mongodb+srv://`` too; the database comes from the path, default ``asynctask``), or
    around your own client, which :meth:`close` leaves open::

        broker = MongoBroker.from_url("mongodb://localhost:27017/jobs?prefix=billing")
        broker = MongoBroker(client=AsyncMongoClient(...), database="jobs", prefix="billing")

    * ``prefix``: collection-name prefix, so several apps can share a database.
    * ``transactions``: use multi-document transactions for workflow events (``None``: if
      the server has them). Without, a crash-safe ordering is used instead.
    * ``change_streams``: wake idle workers from a change stream (``None``: if the server has
      them); otherwise waits poll every ``poll_interval`` seconds.
    * ``ttl_margin``: the TTL index deletes a finished job this many seconds after it expired
      (reads stop seeing it at once; :meth:`prune` deletes it when the worker's maintenance
      runs). ``repair_after``: see :meth:`rescue_expired`.
    * ``enqueue(jobs, connection=session)`` runs in the caller's ``AsyncClientSession`` (and
      its transaction): the jobs exist only if it commits.
    * Flow control (queue settings, task limits, unique jobs): see
      :mod:`~asynctask.brokers.mongo.flow` and :mod:`~asynctask.brokers.mongo.unique`.

    >>> MongoBroker.from_url("mongodb://app:s3cret@db/jobs?prefix=work")
    <MongoBroker mongodb://app:***@db/jobs?prefix=work prefix=work closed>
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        client: Any = None,
        database: str | None = None,
        prefix: str | None = None,
        transactions: bool | None = None,
        change_streams: bool | None = None,
        poll_interval: float | None = None,
        ttl_margin: float | None = None,
        repair_after: float = 30.0,
        clock: Clock = time.time,
    ) -> None:
        if (url is None) == (client is None):
            raise ConfigurationError("MongoBroker needs either url= or client= (not both)")
        opts = parse_url(url) if url is not None else None
        self.clock = clock
        self.database = _pick(database, opts.database if opts else None, DEFAULT_DATABASE)
        self.prefix = validate_prefix(_pick(prefix, opts.prefix if opts else None, DEFAULT_PREFIX))
        self._want_transactions = _pick(transactions, opts.transactions if opts else None, None)
        self._want_streams = _pick(change_streams, opts.change_streams if opts else None, None)
        self.poll_interval = float(_pick(poll_interval, opts.poll_interval if opts else None, 1.0))
        self.ttl_margin = float(_pick(ttl_margin, opts.ttl_margin if opts else None, 3600.0))
        self.repair_after = repair_after
        if self.poll_interval <= 0:
            raise ConfigurationError(f"poll_interval must be positive, got {self.poll_interval}")
        self._opts = opts
        self._owns_client = client is None
        self._client: Any = client
        self._secret = opts.secret if opts else None
        self._target = opts.target if opts else f"(your client)/{self.database}"
        self._display = opts.display_url if opts else f"mongodb://(your client)/{self.database}"
        if opts is None and self.prefix != DEFAULT_PREFIX:
            self._display += f"?prefix={self.prefix}"
        self._open = OpenCount(self._connect_all, self._disconnect)
        self._coll: Any = None
        self._workers: Any = None
        self._flows: Workflows | None = None
        self._flowctl: MongoFlow | None = None
        self._waiter: Waiter | None = None
        # job id -> (token, parent id) of the jobs this broker claimed: lets a completion of a
        # job without a parent skip the workflow path (one round trip for the whole batch).
        self._claimed: dict[str, tuple[int, str | None]] = {}
        # (job id, token) -> the lease expiry this broker last wrote for it.
        self._leases: dict[tuple[str, int], float] = {}
        self.capabilities = Capabilities()

    @classmethod
    def from_url(cls, url: str, *, clock: Clock = time.time) -> Self:
        """The broker for a ``mongodb://`` or ``mongodb+srv://`` URL."""
        return cls(url, clock=clock)

    @property
    def display_url(self) -> str:
        """The URL with its password redacted."""
        return self._display

    @property
    def is_open(self) -> bool:
        """Whether :meth:`open` was called more often than :meth:`close`."""
        return self._open.is_open

    @property
    def transactions(self) -> bool:
        """Whether workflow events run in transactions (known once open)."""
        return self._flows is not None and self._flows.transactions

    def __repr__(self) -> str:
        state = "open" if self.is_open else "closed"
        return f"<MongoBroker {self._display} prefix={self.prefix} {state}>"

    def _translated(self, *, connecting: bool = False) -> Any:
        return translate(self._target, secret=self._secret, connecting=connecting)

    @property
    def collection(self) -> Any:
        """The jobs collection (an ``AsyncCollection``); only while open."""
        if self._coll is None:
            raise ConfigurationError(f"the MongoDB broker {self._display} is not open")
        return self._coll

    @property
    def _wf(self) -> Workflows:
        if self._flows is None:
            raise ConfigurationError(f"the MongoDB broker {self._display} is not open")
        return self._flows

    # --- lifecycle -------------------------------------------------------------------------

    def _connect(self) -> Any:
        if self._client is None:
            assert self._opts is not None
            with self._translated(connecting=True):
                self._client = make_client(self._opts.uri)
        return self._client

    async def open(self) -> None:
        """Connect, create missing indexes, and find out what the server supports (counted)."""
        await self._open.open()

    async def close(self) -> None:
        """Undo one :meth:`open`; the last one closes the client this broker created."""
        await self._open.close()

    async def _connect_all(self) -> None:
        client = self._connect()
        database = client[self.database]
        coll = database[jobs_collection(self.prefix)]
        try:
            with self._translated(connecting=True):
                await client.admin.command("ping")
            with self._translated():
                await migrate(database, self.prefix)
                tx = self._want_transactions
                if tx is None:
                    tx = await supports_transactions(client, coll)
                streams = self._want_streams
                if streams is None:
                    streams = await supports_change_streams(client, coll)
        except BaseException:
            await self._release()
            raise
        self._coll = coll
        self._workers = database[workers_collection(self.prefix)]
        self._flows = Workflows(client, coll, transactions=tx, ttl_margin=self.ttl_margin)
        queues = database[queues_collection(self.prefix)]
        self._flowctl = MongoFlow(coll, queues, database[locks_collection(self.prefix)])
        self._waiter = Waiter(coll, self.clock, poll_interval=self.poll_interval, queues=queues)
        self._waiter.streams = streams
        self.capabilities = Capabilities(transactional_publish=tx, push_wakeups=streams)

    async def _disconnect(self) -> None:
        self._coll = self._workers = self._flows = self._waiter = self._flowctl = None
        self._claimed.clear()
        self._leases.clear()
        await self._release()

    async def _release(self) -> None:
        if self._owns_client and self._client is not None:
            client, self._client = self._client, None
            await client.close()

    async def migrate(self) -> Migration:
        """Create the indexes and record the schema version; works on an unopened broker too.

        Idempotent and safe to run from many processes at once (creating an existing index is
        a no-op on the server).
        """
        client = self._connect()
        try:
            with self._translated(connecting=not self.is_open):
                return await migrate(client[self.database], self.prefix)
        finally:
            if not self.is_open:
                await self._release()

    # --- publishing and claiming -----------------------------------------------------------

    async def enqueue(self, jobs: Sequence[NewJob], *, connection: Any = None) -> list[bool]:
        """Store jobs; ``connection`` (an ``AsyncClientSession``) joins the caller's transaction."""
        if not jobs:
            return []
        coll = self.collection
        if connection is not None and getattr(connection, "client", None) is not self._client:
            raise ConfigurationError(
                "connection= must be an AsyncClientSession of the broker's own client "
                "(start it with broker.client.start_session())"
            )
        with self._translated():
            return await create_jobs(coll, jobs, self.clock(), session=connection)

    @property
    def client(self) -> Any:
        """The ``AsyncMongoClient`` (for sessions joining a transactional publish)."""
        return self._connect()

    async def claim(
        self, queue: str, limit: int, *, lease: float, worker: str, limits: TaskLimits | None = None
    ) -> list[Job]:
        """Claim up to ``limit`` ready jobs (see :mod:`~asynctask.brokers.mongo.claims`), within the
        flow limits (see :mod:`~asynctask.brokers.mongo.flow`)."""
        if limit <= 0:
            return []
        task_limits = normalize_limits(limits)
        now = self.clock()
        flow = self._flow()
        with self._translated():
            jobs: list[Job] | claims.Diverted = claims.Diverted("read")
            if queue not in flow.diverted:
                jobs = await claims.claim(
                    self.collection,
                    queue,
                    limit,
                    now=now,
                    lease=lease,
                    worker=worker,
                    settings=flow.queues.name,
                    limited=frozenset(task_limits),
                )
            if isinstance(jobs, claims.Diverted):
                settings_doc = jobs.settings
                jobs = await flow.claim(
                    queue,
                    limit,
                    now=now,
                    lease=lease,
                    worker=worker,
                    limits=task_limits,
                    settings_doc=settings_doc,
                )
        for job in jobs:
            self._claimed[job.id] = (job.token, job.parent_id)
            if job.lease_expires_at is not None:
                self._leases[(job.id, job.token)] = job.lease_expires_at
        return jobs

    def _plain(self, outcome: Outcome) -> bool:
        """No workflow effect possible: no spawn, and claimed here without a parent."""
        return not outcome.spawn and self._claimed.get(outcome.job_id) == (outcome.token, None)

    async def complete(self, outcomes: Sequence[Outcome]) -> list[bool]:
        """Apply outcomes: those that spawn nothing in one batch, then those that spawn, one by one.

        A batch of jobs claimed here without a parent is one bulk write (and one read if some
        token was stale); jobs with a parent add their count-outs (see
        :mod:`~asynctask.brokers.mongo.workflows`).
        """
        applied = [False] * len(outcomes)
        first: dict[tuple[str, int], int] = {}
        for i, outcome in enumerate(outcomes):
            first.setdefault((outcome.job_id, outcome.token), i)  # a repeated outcome: the first wins
        batch = [i for i in first.values() if not outcomes[i].spawn]
        spawning = [i for i in first.values() if outcomes[i].spawn]
        wf = self._wf
        with self._translated():
            if batch:
                chosen = [outcomes[i] for i in batch]
                if all(self._plain(o) for o in chosen):
                    flags = await wf.apply(chosen, self.clock())
                else:
                    flags = await wf.complete_many(chosen, self.clock())
                for i, flag in zip(batch, flags, strict=True):
                    applied[i] = flag
            for i in spawning:
                applied[i] = await wf.complete(outcomes[i], self.clock())
        for outcome in outcomes:
            self._claimed.pop(outcome.job_id, None)
            self._leases.pop((outcome.job_id, outcome.token), None)
        return applied

    async def extend_leases(self, leases: Sequence[Lease], *, lease: float) -> list[LeaseState]:
        """Extend the leases still held, in one bulk write and one read."""
        if not leases:
            return []
        until = self.clock() + lease
        with self._translated():
            states = await extend(self.collection, leases, until, known=self._leases)
        for held_lease, state in zip(leases, states, strict=True):
            key = (held_lease.job_id, held_lease.token)
            if state is LeaseState.LOST:
                self._leases.pop(key, None)
                self._claimed.pop(held_lease.job_id, None)
            else:
                self._leases[key] = until
        return states

    async def save(
        self, job_id: str, token: int, *, state: bytes | None = None, result: bytes | None = None
    ) -> bool:
        """Persist a running job's state and/or result, fenced by ``token``."""
        fields = {k: v for k, v in (("state", state), ("result", result)) if v is not None}
        with self._translated():
            if not fields:
                found = await self.collection.find_one(held(job_id, token), {"_id": 1})
                return found is not None
            res = await self.collection.update_one(held(job_id, token), {"$set": fields})
        return bool(res.matched_count)

    async def wait_for_jobs(self, queue: str, timeout: float, *, held: bool = False) -> None:
        """Return when a job of ``queue`` may be ready (see :mod:`~asynctask.brokers.mongo.wakeups`);
        ``held``: on a wake-up or the timeout only."""
        waiter = self._waiter
        if waiter is None:
            raise ConfigurationError(f"the MongoDB broker {self._display} is not open")
        with self._translated():
            if held:
                await waiter.wait_held(queue, timeout)
            else:
                await waiter.wait(queue, timeout)

    # --- maintenance -----------------------------------------------------------------------

    async def promote_due(self, limit: int) -> int:
        """Queue scheduled jobs whose time has come; returns how many."""
        if limit <= 0:
            return 0
        with self._translated():
            return await claims.promote_due(self.collection, self.clock(), limit)

    async def rescue_expired(self, limit: int) -> int:
        """Re-queue (or fail) running jobs whose lease expired; returns how many.

        It also repairs what an interrupted worker left half done without transactions: the
        workflow effects recorded more than ``repair_after`` seconds ago and not yet applied.
        """
        if limit <= 0:
            return 0
        now = self.clock()
        with self._translated():
            rescued = await rescue(self.collection, self._wf.event, now, limit)
            await self._wf.repair(now, older_than=self.repair_after)
        return rescued

    async def prune(self, limit: int) -> int:
        """Delete up to ``limit`` jobs past ``expires_at``."""
        if limit <= 0:
            return 0
        now = self.clock()
        with self._translated():
            cursor = self.collection.find({"expires_at": {"$lte": now}}, {"_id": 1}, limit=limit)
            ids = [doc["_id"] async for doc in cursor]
            if not ids:
                return 0
            res = await self.collection.delete_many({"_id": {"$in": ids}, "expires_at": {"$lte": now}})
        return int(res.deleted_count)

    # --- inspection ------------------------------------------------------------------------

    async def get(self, job_id: str) -> Job | None:
        """The job, or ``None`` if it does not exist or has expired."""
        with self._translated():
            doc = await self.collection.find_one({"_id": job_id, **changes.visible(self.clock())})
        return None if doc is None else to_job(doc)

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
        """Jobs matching every given filter, newest first (``created_at``, then id, descending)."""
        if limit <= 0:
            return []
        filters = {"status": status, "queue": queue, "task": task, "parent_id": parent_id}
        query = changes.listing(self.clock(), filters, before)
        with self._translated():
            cursor = self.collection.find(
                query, sort=[("created_at", DESCENDING), ("_id", DESCENDING)], limit=limit
            )
            return [to_job(doc) async for doc in cursor]

    async def queue_stats(self) -> list[QueueStats]:
        """Per queue, live jobs by status and the oldest ready job's ``run_at``: one aggregation."""
        now = self.clock()
        with self._translated():
            return await queue_stats(self.collection, now, changes.visible(now))

    async def _change(self, statuses: list[str], update: Any, job_id: str, *, effects: bool) -> Job | None:
        """Apply a single-job change if the job is in ``statuses``; the job after it, or as it is."""
        now = self.clock()
        query = changes.live(job_id, statuses, now)
        with self._translated():
            if effects:
                doc = await self._wf.event(query, update, now)
            else:
                doc = await self.collection.find_one_and_update(query, update, return_document=_AFTER)
            if doc is None:
                doc = await self.collection.find_one({"_id": job_id, **changes.visible(now)})
        return None if doc is None else to_job(doc)

    async def cancel(self, job_id: str, *, expires_at: float | None) -> Job | None:
        """Cancel a waiting job now (counting it out of its parent); request it of a running one."""
        update = changes.cancel(self.clock(), expires_at, self.ttl_margin)
        job = await self._change(changes.CANCELLABLE, update, job_id, effects=True)
        if job is not None and job.status is JobStatus.RUNNING and not job.cancel_requested:
            return await self._change(
                ["running"], {"$set": {"cancel_requested": True}}, job_id, effects=False
            )
        return job

    async def pause(self, job_id: str) -> Job | None:
        """Park a scheduled or queued job as ``paused``; ask a running one to pause."""
        job = await self._change(["scheduled", "queued"], changes.pause(), job_id, effects=False)
        if job is not None and job.status is JobStatus.RUNNING and not job.pause_requested:
            return await self._change(["running"], {"$set": {"pause_requested": True}}, job_id, effects=False)
        return job

    async def resume(self, job_id: str) -> Job | None:
        """Queue a ``paused`` job again, keeping its ``run_at`` (``scheduled`` while that is ahead)."""
        return await self._change(["paused"], changes.resume(self.clock()), job_id, effects=False)

    async def retry(self, job_id: str) -> Job | None:
        """Queue a failed or cancelled job again with a fresh attempt count; left as it is when its
        unique key is held by another unfinished job (see :mod:`~asynctask.brokers.mongo.unique`)."""
        finished = ["failed", "cancelled"]
        job = await self.get(job_id)
        if job is not None and job.unique_key is not None and job.status.value in finished:
            with self._translated():
                if not await unique.claim_key(self.collection, job_id, job.unique_key, finished):
                    return job
        return await self._change(finished, changes.retry(self.clock()), job_id, effects=True)

    async def delete(self, job_id: str) -> bool:
        """Delete a job in any status; ``False`` if it did not exist."""
        self._claimed.pop(job_id, None)
        with self._translated():
            res = await self.collection.delete_one({"_id": job_id, "hold": {"$exists": False}})
        return bool(res.deleted_count)
