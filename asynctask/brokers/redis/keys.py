"""Every Redis key the broker uses, built in this one module.

Layout, for prefix ``P`` and queue ``q``::

    P:ids              hash   job id -> queue name (the only way to find a job by id)
    P:queues           set    every queue ever published to (for maintenance and listing)
    P:{q}:job:<id>     hash   one job record (see ``codec.py`` for its fields)
    P:{q}:ready        zset   claimable jobs; all scores 0, the member encodes the claim order
    P:{q}:scheduled    zset   delayed jobs, scored by ``run_at``
    P:{q}:leased       zset   running jobs, scored by ``lease_expires_at``
    P:{q}:finished     zset   finished jobs that expire, scored by ``expires_at``
    P:{q}:all          zset   legacy: written by versions before issue #18's bulk-enqueue work
                              (every job, scored by ``created_at``, never read); new jobs no
                              longer enter it, old entries are removed with their jobs
    P:{q}:wake         list   wake-up signals for idle workers (``BLPOP``), trimmed
    P:{q}:wake:<w>     list   the stop signal of one worker's wait (``waiting.py``); a minute's TTL
    P:{q}:seq          string counter behind publish order
    P:{q}:created      zset   every job of the queue, scored by ``created_at``, member = id
    P:{q}:status:<s>   zset   waiting, paused and finished jobs by status, like ``created``
    P:{q}:flow         hash   the queue's flow settings and token bucket (absent: the defaults)
    P:unique           hash   unique key -> the job that took it last (checked when read)
    P:task:<t>:running hash   job key -> token of task t's jobs claimed under its limits
    P:task:<t>:bucket  hash   task t's token bucket (tokens, refilled_at)
    P:workers          hash   worker id -> its record (``WorkerInfo`` as JSON)
    P:workers:expiry   zset   worker ids, scored by when their record expires

The ``{q}`` hash tag puts every key of a queue in one Redis Cluster slot, so each per-queue
script touches a single slot. ``P:ids`` and ``P:queues`` live outside any queue's slot; the hot
path (enqueue, claim, complete, extend, promote, rescue) reaches them only through plain
commands of their own. Workflow links (a child's parent, children spawned by an outcome) are the
one place a script leaves its queue's slot; see ``asynctask.lua``.

The Lua mirrors this layout in ``queue_keys``; every call passes :class:`QueueKeys` as ``KEYS``
and the script refuses to run if the two disagree.
"""

from __future__ import annotations

from typing import NamedTuple

from asynctask.errors import InvalidName

__all__ = ["DEFAULT_PREFIX", "Keys", "QueueKeys"]

DEFAULT_PREFIX = "asynctask"

# A brace would move or break the hash tag, and the tag is what keeps a queue in one slot.
_FORBIDDEN = frozenset("{}")


class QueueKeys(NamedTuple):
    """The keys of one queue, in the order the Lua scripts expect them as ``KEYS``."""

    ready: str
    scheduled: str
    leased: str
    finished: str
    all: str
    wake: str
    seq: str
    flow: str

    @property
    def job_prefix(self) -> str:
        """Prefix of the queue's job hashes; the scripts append the job id."""
        return self.ready.removesuffix("ready") + "job:"

    def job(self, job_id: str) -> str:
        """The key of one job's hash."""
        return self.job_prefix + job_id

    # Inspection indexes (listing, queue statistics); the Lua builds the same names.

    @property
    def created(self) -> str:
        """Every job of the queue, scored by ``created_at``, member = id (listing order)."""
        return self.ready.removesuffix("ready") + "created"

    def status(self, status: str) -> str:
        """The jobs in ``status`` (waiting, paused and finished ones), like :attr:`created`."""
        return self.ready.removesuffix("ready") + "status:" + status


class Keys:
    """Builds the keys under one prefix.

    >>> Keys("asynctask").queue("emails").ready
    'asynctask:{emails}:ready'
    """

    def __init__(self, prefix: str = DEFAULT_PREFIX) -> None:
        if not prefix or _FORBIDDEN & set(prefix):
            raise InvalidName(f"Redis key prefix must be non-empty and contain no braces: {prefix!r}")
        self.prefix = prefix
        #: job id -> queue name.
        self.ids = f"{prefix}:ids"
        #: Set of queue names.
        self.queues = f"{prefix}:queues"
        #: The worker registry: id -> record, and id by expiry (the Lua derives the latter).
        self.workers = f"{prefix}:workers"
        self.workers_expiry = f"{prefix}:workers:expiry"
        #: unique key -> job id.
        self.unique = f"{prefix}:unique"
        #: Functions library -> when a worker last used it (see libraries.py).
        self.libraries = f"{prefix}:libraries"

    def queue(self, queue: str) -> QueueKeys:
        """The keys of ``queue``, all sharing its hash tag."""
        if not queue or _FORBIDDEN & set(queue):
            raise InvalidName(f"queue name must be non-empty and contain no braces: {queue!r}")
        base = f"{self.prefix}:{{{queue}}}:"
        return QueueKeys(*(base + name for name in QueueKeys._fields))

    def pattern(self) -> str:
        """A ``SCAN MATCH`` pattern for every key under the prefix (used by test cleanup)."""
        escaped = "".join("\\" + c if c in "*?[]\\" else c for c in self.prefix)
        return escaped + ":*"
