"""The broker's local index of the bucket: every job record, kept current by a watch.

JetStream has no server-side ordering but stream order, and the contract's order (priority,
then ``run_at``, then publish order), its delays and its leases are judged by the broker's
injected clock, never by the server's. So each broker that claims keeps an index of the records,
fed by a watch of the bucket (and by its own writes at once, so it reads its own writes), and
decides here which jobs are ready, due, expired or prunable. Every decision is then written under
the revision the index saw: a stale index costs a failed compare-and-set, never a wrong write.

Heaps are lazy, as in the memory broker: entries go stale when a record changes and are dropped
when they reach the top. ``born`` (the revision at which a key appeared) and ``since`` (the
revision at which a job entered its status) reproduce the memory broker's tie-breaks: publish
order among equal priorities and times, and insertion order for the maintenance calls.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import anyio

from asynctask.brokers.nats.layout import QUEUE_PREFIX, Layout
from asynctask.brokers.nats.records import Versioned
from asynctask.models import Job, JobStatus

__all__ = ["Entry", "Index"]


class Entry:
    """A record as the index knows it; ``job`` is ``None`` for a deleted key (a tombstone)."""

    __slots__ = ("born", "job", "rev", "since")

    def __init__(self, job: Job | None, rev: int, born: int, since: int) -> None:
        self.job, self.rev, self.born, self.since = job, rev, born, since

    def versioned(self) -> Versioned:
        return Versioned(self.job, self.rev)


class Index:
    """Job records by id, with the orders the broker's decisions need."""

    def __init__(self) -> None:
        self._entries: dict[str, Entry] = {}
        self._ready: dict[str, list[tuple[int, float, int, str]]] = {}
        self._scheduled: dict[str, list[tuple[float, int, str]]] = {}
        self._running: list[tuple[float, str]] = []
        self._expiring: list[tuple[float, str]] = []
        self._children: dict[str, set[str]] = {}
        self._events: dict[str, anyio.Event] = {}
        self._pushes = 0
        self._tombstones = 0
        #: Revisions at which a claim lost a compare-and-set: skipped until the record moves on.
        self.conflicted: dict[str, int] = {}
        #: The last stream sequence the watch delivered.
        self.watched = 0
        self._unseen: set[str] | None = None
        #: Running jobs by queue and by task, as this index sees them (for concurrency limits).
        self.running_in_queue: Counter[str] = Counter()
        self.running_of_task: Counter[str] = Counter()
        #: Flow records (queue and task records) by key: (decoded value or None, revision).
        self._records: dict[str, tuple[Any, int]] = {}
        #: Flow records this broker wrote itself while the index held every change before them.
        self._chained: dict[str, int] = {}
        self._watchers: list[tuple[int, anyio.Event]] = []

    def __len__(self) -> int:
        return len(self._entries) - self._tombstones

    def __repr__(self) -> str:
        return f"<Index jobs={len(self)} watched={self.watched}>"

    # --- updates ------------------------------------------------------------------------------

    def apply(self, job_id: str, job: Job | None, rev: int) -> None:
        """Record that ``job_id`` holds ``job`` (``None``: deleted) as of revision ``rev``."""
        if self._unseen is not None:
            self._unseen.discard(job_id)
        old = self._entries.get(job_id)
        if old is not None and old.rev >= rev:
            return
        self.conflicted.pop(job_id, None)  # a mark is about one revision, now gone
        old_job = old.job if old is not None else None
        if old_job is not None and old_job.status is JobStatus.RUNNING:
            self.running_in_queue[old_job.queue] -= 1
            self.running_of_task[old_job.task] -= 1
        if job is not None and job.status is JobStatus.RUNNING:
            self.running_in_queue[job.queue] += 1
            self.running_of_task[job.task] += 1
        if (
            old_job is not None
            and old_job.parent_id is not None
            and (job is None or job.parent_id != old_job.parent_id)
        ):
            self._drop_child(old_job.parent_id, job_id)
        if job is None:
            if old_job is not None or old is None:
                self._tombstones += 1
            self._entries[job_id] = Entry(None, rev, rev, rev)
            return
        if old is not None and old_job is None:
            self._tombstones -= 1
        born = since = rev
        if old is not None and old_job is not None:
            born = old.born
            if old_job.status is job.status:
                since = old.since
        self._entries[job_id] = Entry(job, rev, born, since)
        if job.parent_id is not None:
            self._children.setdefault(job.parent_id, set()).add(job_id)
        self._push(job_id, job, since)

    def seen(self, job_id: str) -> None:
        """The watch delivered a revision of ``job_id`` the index already has."""
        if self._unseen is not None:
            self._unseen.discard(job_id)

    def _push(self, job_id: str, job: Job, since: int) -> None:
        self._pushes += 1
        status = job.status
        if status is JobStatus.QUEUED:
            heapq.heappush(self._ready.setdefault(job.queue, []), (-job.priority, job.run_at, since, job_id))
            self._wake(job.queue)
        elif status is JobStatus.SCHEDULED:
            heapq.heappush(self._scheduled.setdefault(job.queue, []), (job.run_at, since, job_id))
            self._wake(job.queue)
        elif status is JobStatus.RUNNING and job.lease_expires_at is not None:
            heapq.heappush(self._running, (job.lease_expires_at, job_id))
        if job.expires_at is not None:
            heapq.heappush(self._expiring, (job.expires_at, job_id))
        if self._pushes > 4 * len(self._entries) + 10_000:
            self._rebuild()

    def _drop_child(self, parent_id: str, job_id: str) -> None:
        children = self._children.get(parent_id)
        if children is not None:
            children.discard(job_id)
            if not children:
                del self._children[parent_id]

    def _rebuild(self) -> None:
        """Rebuild the heaps from the entries, dropping stale heap items and old tombstones."""
        self._ready, self._scheduled, self._running, self._expiring = {}, {}, [], []
        self._pushes = 0
        entries = self._entries
        for job_id in [i for i, e in entries.items() if e.job is None and e.rev <= self.watched]:
            del entries[job_id]
            self._tombstones -= 1
        for job_id, entry in entries.items():
            if entry.job is not None:
                self._push(job_id, entry.job, entry.since)

    def begin_resync(self) -> None:
        """A fresh snapshot of the bucket starts: keys it does not deliver will be dropped."""
        self._unseen = {i for i, e in self._entries.items() if e.job is not None}
        self._chained.clear()

    # --- flow records -------------------------------------------------------------------------

    def apply_record(self, key: str, value: Any, rev: int, *, own: bool = False) -> None:
        """Record that flow record ``key`` holds ``value`` (``None``: none) as of ``rev``.

        ``own``: this broker wrote it, under a revision the index covered (see :meth:`covers`).
        A queue's record changing wakes the queue's waiters (its settings may have changed).
        """
        old = self._records.get(key)
        if own:
            self._chained[key] = rev
        if old is not None and old[1] >= rev:
            return
        self._records[key] = (value, rev)
        if key.startswith(QUEUE_PREFIX):
            self._wake(Layout.name_of(key))

    def record(self, key: str) -> tuple[Any, int]:
        """A flow record as last seen: (value or ``None``, revision; 0 when never seen)."""
        return self._records.get(key, (None, 0))

    def records(self, prefix: str) -> Iterator[tuple[str, Any]]:
        """Every flow record whose key starts with ``prefix``, with its value."""
        return ((k, v) for k, (v, _) in self._records.items() if k.startswith(prefix) and v is not None)

    def covers(self, key: str, rev: int) -> bool:
        """Whether the index holds every change stored before flow record ``key`` reached ``rev``.

        True once the watch delivered ``rev``, or when this broker wrote ``rev`` itself while the
        index covered the revision it replaced (each write of the record is one atomic batch with
        the jobs it claims, so a chain of own writes misses none of them).
        """
        return rev <= self.watched or self._chained.get(key) == rev

    def advance(self, seq: int) -> None:
        """The watch delivered stream sequence ``seq``."""
        self.watched = seq
        if self._watchers and self._watchers[0][0] <= seq:
            waiting = self._watchers
            self._watchers = [(s, e) for s, e in waiting if s > seq]
            for s, event in waiting:
                if s <= seq:
                    event.set()

    async def caught_up(self, seq: int, timeout: float) -> bool:
        """Wait until the watch delivered ``seq``; ``False`` if ``timeout`` passed first."""
        if self.watched >= seq:
            return True
        event = anyio.Event()
        self._watchers.append((seq, event))
        self._watchers.sort(key=lambda item: item[0])
        with anyio.move_on_after(timeout):
            await event.wait()
        return event.is_set()

    def end_resync(self, last_seq: int) -> None:
        """The snapshot is complete up to ``last_seq``: forget the keys it did not hold."""
        unseen, self._unseen = self._unseen or set(), None
        for job_id in unseen:
            entry = self._entries.get(job_id)
            if entry is not None and entry.job is not None and entry.rev <= last_seq:
                self.apply(job_id, None, last_seq)
        self.wake_all()

    # --- wake-ups -----------------------------------------------------------------------------

    def _wake(self, queue: str) -> None:
        event = self._events.pop(queue, None)
        if event is not None:
            event.set()

    def wake_all(self) -> None:
        """Wake every waiter (a reset: each should look again)."""
        for queue in list(self._events):
            self._wake(queue)

    def event(self, queue: str) -> anyio.Event:
        """An event set the next time a job of ``queue`` becomes queued or scheduled."""
        event = self._events.get(queue)
        if event is None:
            event = self._events[queue] = anyio.Event()
        return event

    # --- reads --------------------------------------------------------------------------------

    def get(self, job_id: str) -> Versioned | None:
        """The record as last seen, or ``None`` if the index never saw the key."""
        entry = self._entries.get(job_id)
        return None if entry is None else entry.versioned()

    def revision(self, job_id: str) -> int | None:
        """The revision of the record as last seen, or ``None`` if the index never saw the key."""
        entry = self._entries.get(job_id)
        return None if entry is None else entry.rev

    def jobs(self) -> Iterator[Entry]:
        """Every entry holding a job, in no particular order."""
        return (e for e in self._entries.values() if e.job is not None)

    def children(self, parent_id: str) -> Iterable[Entry]:
        """Entries of the jobs whose parent is ``parent_id``."""
        entries = self._entries
        return [entries[i] for i in self._children.get(parent_id, ()) if i in entries]

    def _valid(self, job_id: str, status: JobStatus, since: int) -> Entry | None:
        entry = self._entries.get(job_id)
        if entry is None or entry.job is None or entry.job.status is not status or entry.since != since:
            return None
        return entry

    def has_ready(self, queue: str, now: float) -> bool:
        """Whether a job of ``queue`` is queued, or scheduled and due."""
        ready = self._ready.get(queue)
        while ready:
            _, _, since, job_id = ready[0]
            if self._valid(job_id, JobStatus.QUEUED, since) is not None:
                return True
            heapq.heappop(ready)
        next_run = self.next_run_at(queue)
        return next_run is not None and next_run <= now

    def next_run_at(self, queue: str) -> float | None:
        """The earliest ``run_at`` of the scheduled jobs of ``queue``."""
        scheduled = self._scheduled.get(queue)
        while scheduled:
            run_at, since, job_id = scheduled[0]
            if self._valid(job_id, JobStatus.SCHEDULED, since) is not None:
                return run_at
            heapq.heappop(scheduled)
        return None

    def select(self, queue: str, now: float, limit: int, skip: set[str]) -> tuple[list[Entry], list[Entry]]:
        """Up to ``limit`` jobs to claim from ``queue`` in claim order, and the due jobs left over.

        Due scheduled jobs rank after every job queued already with the same priority and
        ``run_at`` (the memory broker promotes them at the start of a claim); the second list
        holds the due jobs not selected, in the order they are to be promoted. Ids in ``skip``,
        and records whose claim lost a compare-and-set at their current revision, are passed over.
        """
        scheduled = self._scheduled.get(queue, [])
        popped_due, due = self._pop_until(scheduled, now, JobStatus.SCHEDULED)
        due = [e for e in due if not self._passed_over(e, skip)]
        ranked = sorted(range(len(due)), key=lambda i: (-_job(due[i]).priority, _job(due[i]).run_at, i))
        ready = self._ready.get(queue, [])
        selected: list[Entry] = []
        chosen: set[str] = set()
        popped: list[tuple[int, float, int, str]] = []
        d = 0
        try:
            while len(selected) < limit:
                head = None
                while ready:
                    item = ready[0]
                    entry = self._valid(item[3], JobStatus.QUEUED, item[2])
                    if entry is None:
                        heapq.heappop(ready)
                    elif item[3] in chosen or self._passed_over(entry, skip):
                        popped.append(heapq.heappop(ready))
                    else:
                        head = (item, entry)
                        break
                if d < len(ranked):
                    job = _job(due[ranked[d]])
                    if head is None or (-job.priority, job.run_at) < (head[0][0], head[0][1]):
                        selected.append(due[ranked[d]])
                        chosen.add(job.id)
                        d += 1
                        continue
                if head is None:
                    break
                popped.append(heapq.heappop(ready))
                selected.append(head[1])
                chosen.add(head[0][3])
        finally:
            for item in popped:
                heapq.heappush(ready, item)
            for sched in popped_due:
                heapq.heappush(scheduled, sched)
        return selected, [e for e in due if _job(e).id not in chosen]

    def _passed_over(self, entry: Entry, skip: set[str]) -> bool:
        job_id = _job(entry).id
        return job_id in skip or self.conflicted.get(job_id) == entry.rev

    def _pop_until(
        self, heap: list[tuple[float, int, str]], now: float, status: JobStatus
    ) -> tuple[list[tuple[float, int, str]], list[Entry]]:
        """Pop the valid items of a (time, since, id) heap up to ``now``; the caller pushes them back."""
        items: list[tuple[float, int, str]] = []
        found: list[Entry] = []
        while heap and heap[0][0] <= now:
            item = heapq.heappop(heap)
            entry = self._valid(item[2], status, item[1])
            if entry is not None:
                items.append(item)
                found.append(entry)
        return items, found

    def due(self, now: float) -> list[Entry]:
        """Scheduled jobs of every queue whose ``run_at`` has come, in insertion order."""
        found: list[Entry] = []
        for heap in self._scheduled.values():
            items, entries = self._pop_until(heap, now, JobStatus.SCHEDULED)
            for item in items:
                heapq.heappush(heap, item)
            found += entries
        return sorted(found, key=lambda e: e.born)

    def lapsed(self, now: float) -> list[Entry]:
        """Running jobs whose lease expired by ``now``, in insertion order."""
        return self._drain(self._running, now, _lease_key)

    def expired(self, now: float) -> list[Entry]:
        """Jobs whose ``expires_at`` has passed (only finished jobs have one), in insertion order."""
        return self._drain(self._expiring, now, _expiry_key)

    def _drain(
        self, heap: list[tuple[float, str]], now: float, key: Callable[[Job], float | None]
    ) -> list[Entry]:
        """Entries at the top of ``heap`` up to ``now`` whose current key still matches."""
        found: dict[str, Entry] = {}
        kept = []
        while heap and heap[0][0] <= now:
            item = heapq.heappop(heap)
            entry = self._entries.get(item[1])
            if entry is None or entry.job is None or key(entry.job) != item[0] or item[1] in found:
                continue
            kept.append(item)
            found[item[1]] = entry
        for item in kept:
            heapq.heappush(heap, item)
        return sorted(found.values(), key=lambda e: e.born)


def _job(entry: Entry) -> Job:
    assert entry.job is not None
    return entry.job


def _lease_key(job: Job) -> float | None:
    return job.lease_expires_at if job.status is JobStatus.RUNNING else None


def _expiry_key(job: Job) -> float | None:
    return job.expires_at
