"""The broker protocol: the one seam between asynctask and a storage backend.

It is small and batch-shaped so a backend can serve each call in one round trip. Every
backend passes the same contract suite (``tests/contract``); where backends differ they say so
through :class:`Capabilities`, never through skipped tests.

Semantics every backend implements:

* **Leases and fencing.** :meth:`Broker.claim` moves ready jobs to ``running``, bumps their
  fencing ``token`` and sets ``lease_expires_at = now + lease``. :meth:`Broker.complete`,
  :meth:`Broker.save` and :meth:`Broker.extend_leases` apply only while the job is ``running``
  with the same token, so a zombie worker can never overwrite the new owner's outcome.
* **Ready set.** A job is claimable when it is ``queued``, or ``scheduled`` with
  ``run_at <= now``. Claim order: highest ``priority`` first, then earliest ``run_at``, then
  publish order.
* **Idempotent enqueue.** A job whose id already exists is not enqueued again.
* **Rescue.** :meth:`Broker.rescue_expired` re-queues ``running`` jobs whose lease expired
  (the attempt stays counted) or fails them when no retries are left.
* **Expiry.** Finished jobs carry ``expires_at``; once it has passed, reads treat the job as
  gone and :meth:`Broker.prune` may delete it.
* **Workflows** (subtasks, groups, chains) rest on one counter. A job with ``pending > 0`` is
  ``waiting`` and is not claimable. ``NewJob.pending`` sets it at enqueue (a group waits for its
  members). An outcome's ``spawn`` jobs are enqueued atomically with it (only if it applies;
  ids that exist already are skipped) and each one with a ``parent_id`` adds 1 to that parent's
  ``pending``. A ``SUCCEEDED`` outcome whose job then has ``pending > 0`` leaves it ``waiting``
  instead. Whenever a job with a ``parent_id`` enters a finished status (``succeeded``,
  ``failed``, ``cancelled``: by ``complete``, ``rescue_expired`` or ``cancel``) its parent's
  ``pending`` drops by 1, and a ``waiting`` parent that reaches 0 becomes ``queued`` again with
  ``attempts = 0`` and ``run_at = now`` (its on-finish phase). ``retry`` of a finished child whose
  parent is ``waiting`` adds 1 back. ``meta`` is opaque: stored from ``NewJob.meta`` and replaced
  by ``Outcome.meta``.
* **Pause.** :meth:`Broker.pause` parks a ``scheduled``/``queued`` job as ``paused`` and asks a
  running one to stop (``pause_requested``, seen as ``LeaseState.PAUSE`` by the heartbeat);
  a ``PAUSE`` outcome parks it without counting the attempt. :meth:`Broker.resume` queues a
  ``paused`` job again, keeping its ``run_at``: ``scheduled`` if that is still ahead.
* **Flow control** (:mod:`asynctask.flow`) is enforced by the claim, so it holds across
  workers. A queue's :class:`~asynctask.flow.QueueSettings` are stored in the broker
  (:meth:`Broker.set_queue_limits`, :meth:`Broker.set_queue_paused`); a task's
  :class:`~asynctask.flow.TaskLimit` travels with every claim (``claim(..., limits=)``, task name
  -> limit, from the worker's registry). ``claim(q, n, limits=L)`` takes jobs in claim order,
  skipping (leaving ``queued``, in place) every job that would break one of these rules, and
  takes the claimable jobs behind a skipped one (a broker may bound how many ready jobs one claim
  looks at, held-back ones included, to ``4 * n + 64`` but at most 2048, so that a backlog held
  back costs each claim a bounded effort):

  - a **paused** queue gives nothing (publishing into it still works; running jobs finish);
  - **concurrency**: never more than ``settings.concurrency`` jobs of ``q``, nor more than
    ``L[t].concurrency`` jobs of task ``t`` (whatever their queue), ``running`` at once;
  - **rate**: each key (the queue ``q``; each task ``t`` of ``L``) with a rate has a token bucket
    holding up to ``rate.burst`` tokens: a bucket never used is full; at time ``now`` it holds
    ``min(burst, tokens + (now - refilled_at + CLOCK_SLACK) * rate.per_second)`` (``CLOCK_SLACK``
    = 1 µs absorbs float rounding of timestamps)
    (:func:`~asynctask.flow.refill`); each job claimed takes one token from its queue's bucket
    and one from its task's; a job whose bucket holds less than one token is skipped.

  Checks and token updates are atomic with the claim: two workers claiming at once never take
  more than the limit between them. When the claim left ready jobs behind because of one of
  these rules it returns a :class:`~asynctask.flow.Claimed` with ``held_back=True`` and
  ``retry_at`` = the earliest time a bucket that held jobs back holds ``max(min(burst, n) / 2, 1)``
  tokens (:func:`~asynctask.flow.tokens_due_at`; ``None`` when no bucket held jobs back); otherwise
  any ``list``. ``wait_for_jobs(q, timeout, held=True)`` then does not return merely because
  ready jobs exist: it returns on a wake-up (a publish, a resume, a settings change) or after
  ``timeout``. Every settings change wakes the queue's idle workers. When no limit is passed and
  no setting is stored for the queue, a claim costs what it always did (no extra round trip).
* **Unique jobs.** A :class:`~asynctask.models.NewJob` with a ``unique_key`` is not stored (the
  enqueue answers ``False``, as for an existing id) while another *unfinished* job
  (``scheduled``, ``queued``, ``running``, ``waiting``, ``paused``) holds that key; within a batch
  the first one wins; a spawned child follows the same rule. A job releases its key when it
  finishes (``succeeded``, ``failed``, ``cancelled``), expires or is deleted.
  :meth:`Broker.find_unique` returns the unfinished holder. :meth:`Broker.retry` of a finished job
  whose key another unfinished job now holds leaves it as it is.
* **Inspection.** :meth:`Broker.list_jobs` returns jobs newest first: ``created_at``
  descending, then ``id`` descending, a total order, so the pair ``(created_at, id)`` of the
  last job of a page is the cursor (``before=``) of the next page (keyset pagination: a page
  costs the same however deep it is). :meth:`Broker.queue_stats` counts every queue's jobs by
  status in one cheap call (no per-job round trips), for dashboards and metrics.
* **Headers.** ``NewJob.headers`` (a ``dict[str, str]``, possibly empty) is stored as it is and
  returned on every read of the job (``get``, ``claim``, ``list_jobs``), for jobs enqueued by
  ``enqueue`` and for an outcome's ``spawn`` alike; the broker never reads it.
* **Worker registry.** :meth:`Broker.record_worker` stores a :class:`~asynctask.models.WorkerInfo`
  under its ``id`` (replacing the previous record of that id), stamping ``heartbeat_at = now``
  and ``expires_at = now + ttl``; :meth:`Broker.list_workers` returns the records whose
  ``expires_at`` is still ahead, sorted by ``id``; :meth:`Broker.remove_worker` deletes one.
  Records past their expiry are never returned and may be deleted by any call. A few records
  per worker process: no index beyond the id is needed.
* **Time** comes from the injected ``clock`` (a zero-argument callable returning POSIX seconds)
  so tests can drive expiry with a fake clock.
* **Opening** is counted: the first :meth:`Broker.open` connects, each ``open`` needs its
  :meth:`Broker.close`, the last ``close`` disconnects, extra closes are harmless, and
  ``is_open`` tells. :class:`~asynctask.brokers.refcount.OpenCount` is the one implementation;
  every broker here uses it.

The contract suite ships with the package: ``pytest -p asynctask.testing.contract`` (see
:mod:`asynctask.testing.contract`) runs every rule above against any broker, this repository's
and yours.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol, Self, runtime_checkable

import anyio
import msgspec

from asynctask.flow import QueueSettings, RateLimit, TaskLimits
from asynctask.models import Job, JobStatus, Lease, LeaseState, NewJob, Outcome, QueueStats, WorkerInfo

__all__ = ["Broker", "Capabilities", "ClaimsOnWake", "Clock", "Migratable", "Migration"]

#: A zero-argument callable returning the current time as POSIX seconds.
Clock = Callable[[], float]


class Capabilities(msgspec.Struct, frozen=True, kw_only=True):
    """What a backend can do beyond the common contract (only what code or tests act on)."""

    #: ``enqueue(..., connection=...)`` joins the caller's database transaction.
    transactional_publish: bool = False
    #: Idle workers are woken by the broker instead of polling.
    push_wakeups: bool = False
    #: The broker has :meth:`ClaimsOnWake.wait_and_claim`: a wait whose wake-up claims at once.
    claim_on_wake: bool = False


class Migration(msgspec.Struct, frozen=True):
    """What :meth:`Migratable.migrate` did: the schema version before (``None``: there was none)
    and after."""

    before: int | None
    after: int

    def describe(self) -> str:
        if self.before is None:
            return f"schema created (version {self.after})"
        if self.before == self.after:
            return f"schema already current (version {self.after})"
        return f"schema upgraded from version {self.before} to {self.after}"


@runtime_checkable
class Migratable(Protocol):
    """A broker with a schema to create or upgrade (``asynctask migrate`` runs it)."""

    async def migrate(self) -> Migration:
        """Create or upgrade the schema; safe to run from many processes at once."""
        ...


class ClaimsOnWake(Protocol):
    """A broker whose idle worker's wake-up claims at once (``Capabilities.claim_on_wake``).

    Optional: the fetcher uses it where a broker has it, else :meth:`Broker.wait_for_jobs` then
    :meth:`Broker.claim`.
    """

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
        """``wait_for_jobs(queue, timeout)`` then ``claim(queue, limit, ...)``, with the claim made
        by the broker as the wait ends (it may return nothing: a timeout, or nothing claimable).
        Once ``stop`` is set the wait ends and claims nothing; cancelling it instead may leave
        jobs leased to ``worker`` unseen until their lease expires."""
        ...


class Broker(Protocol):
    """A storage backend for jobs. See the module docstring for the semantics."""

    capabilities: Capabilities

    @classmethod
    def from_url(cls, url: str, *, clock: Clock = ...) -> Self:
        """The broker for ``url`` (with its password), reading time from ``clock``; connects nothing."""
        ...

    #: The broker's URL with any password redacted, for logs and reprs.
    @property
    def display_url(self) -> str: ...

    @property
    def is_open(self) -> bool:
        """Whether :meth:`open` was called more often than :meth:`close`."""
        ...

    async def open(self) -> None:
        """Connect. Raises :class:`~asynctask.errors.BrokerUnavailable` naming the host.

        Opens are counted: a broker shared by several users (an App and a test, an embedded
        worker) stays connected until each ``open`` has had its ``close``.
        """

    async def close(self) -> None:
        """Undo one :meth:`open`; the last one disconnects. Extra calls are harmless."""

    async def enqueue(self, jobs: Sequence[NewJob], *, connection: Any = None) -> list[bool]:
        """Store jobs; for each, ``True`` if it was created, ``False`` if its id existed."""
        ...

    async def claim(
        self, queue: str, limit: int, *, lease: float, worker: str, limits: TaskLimits | None = None
    ) -> list[Job]:
        """Claim up to ``limit`` ready jobs of ``queue`` in priority order, within the flow limits
        (the queue's settings and the tasks' ``limits``); a :class:`~asynctask.flow.Claimed` when
        they held jobs back."""
        ...

    async def complete(self, outcomes: Sequence[Outcome]) -> list[bool]:
        """Apply outcomes; for each, ``False`` if its token was stale (nothing written)."""
        ...

    async def extend_leases(self, leases: Sequence[Lease], *, lease: float) -> list[LeaseState]:
        """Push lease expiry to ``now + lease`` for jobs still held with these tokens."""
        ...

    async def save(
        self, job_id: str, token: int, *, state: bytes | None = None, result: bytes | None = None
    ) -> bool:
        """Persist a running job's state and/or result now, fenced by ``token``."""
        ...

    async def wait_for_jobs(self, queue: str, timeout: float, *, held: bool = False) -> None:
        """Return when a job of ``queue`` may be ready, or after ``timeout`` seconds.

        ``held``: the last claim was held back by flow control, so ready jobs are no reason to
        return: wait for a wake-up or the timeout.
        """

    async def promote_due(self, limit: int) -> int:
        """Move ``scheduled`` jobs whose time has come to ``queued``; returns how many."""
        ...

    async def rescue_expired(self, limit: int) -> int:
        """Re-queue (or fail, with no retries left) running jobs whose lease expired."""
        ...

    async def prune(self, limit: int) -> int:
        """Delete finished jobs past ``expires_at``; returns how many."""
        ...

    async def get(self, job_id: str) -> Job | None:
        """The job, or ``None`` if it does not exist or has expired."""
        ...

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
        """Up to ``limit`` jobs matching every given filter, newest first.

        Newest first means ``created_at`` descending, then ``id`` descending. ``before`` is the
        ``(created_at, id)`` of the last job of the previous page: only jobs strictly after it in
        that order (older, or as old with a smaller id) are returned. Expired jobs are left out.
        """
        ...

    async def queue_stats(self) -> list[QueueStats]:
        """Per queue, its live jobs counted by status and its oldest ready job's ``run_at``.

        One entry for every queue holding at least one live job, sorted by queue name; each
        ``counts`` has every :class:`~asynctask.models.JobStatus` (zeros included). A job is
        ready when it is ``queued``, or ``scheduled`` with ``run_at <= now``; ``oldest_ready_at``
        is the smallest ``run_at`` among them (``None``: nothing ready). One cheap call: a
        backend answers it without a round trip per job and without reading payloads.
        """
        ...

    async def record_worker(self, info: WorkerInfo, *, ttl: float) -> None:
        """Store a worker's record, live until ``ttl`` seconds from now (see the module docstring)."""

    async def remove_worker(self, worker_id: str) -> None:
        """Delete a worker's record (it stopped); nothing happens if there is none."""

    async def list_workers(self) -> list[WorkerInfo]:
        """The records of live workers (``expires_at`` ahead), sorted by ``id``."""
        ...

    async def pause(self, job_id: str) -> Job | None:
        """Park a waiting-to-run job as ``paused``, or ask a running one to pause after its step."""
        ...

    async def resume(self, job_id: str) -> Job | None:
        """Queue a ``paused`` job again (``scheduled`` while its ``run_at`` is ahead); other statuses
        are left as they are."""
        ...

    async def cancel(self, job_id: str, *, expires_at: float | None) -> Job | None:
        """Cancel a job that has not finished.

        ``scheduled``/``queued``/``paused``/``waiting`` become ``cancelled`` at once; a
        ``running`` job gets ``cancel_requested`` (its worker learns at the next heartbeat).
        Returns the job after the change, or ``None`` if it does not exist.
        """
        ...

    async def retry(self, job_id: str) -> Job | None:
        """Queue a ``failed`` or ``cancelled`` job again with a fresh attempt count."""
        ...

    async def find_unique(self, unique_key: str) -> Job | None:
        """The unfinished job holding ``unique_key``, or ``None``."""
        ...

    async def queue_settings(self, queue: str) -> QueueSettings:
        """The queue's stored settings (``QueueSettings()`` for a queue never configured)."""
        ...

    async def configured_queues(self) -> dict[str, QueueSettings]:
        """Every queue whose settings differ from the default, by name."""
        ...

    async def set_queue_limits(
        self, queue: str, *, concurrency: int | None, rate: RateLimit | None
    ) -> QueueSettings:
        """Replace the queue's limits (``None``: no limit), keep its pause; wakes its workers.

        A changed rate starts with a full bucket.
        """
        ...

    async def set_queue_paused(self, queue: str, paused: bool) -> QueueSettings:
        """Pause or resume claiming from the queue, keep its limits; wakes its workers."""
        ...

    async def delete(self, job_id: str) -> bool:
        """Delete a job in any status; ``False`` if it did not exist.

        Deleting an unfinished child does not count it out of a waiting parent (the parent would
        wait for ever): cancel a child instead.
        """
        ...
