"""The inspection contract: keyset pagination of ``list_jobs`` and ``queue_stats``, every broker.

What the web dashboard and the metrics stand on: pages that follow a ``(created_at, id)``
cursor newest first, whatever the filters, and per-queue counts that follow every transition.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from asynctask import App, JobCtx
from asynctask.brokers.base import Broker
from asynctask.models import Job, JobStatus, NewJob, Outcome, OutcomeKind, QueueStats
from asynctask.testing import FakeClock

LEASE = 30.0


def new(clock: FakeClock, job_id: str, **kw: object) -> NewJob:
    fields: dict[str, object] = {
        "id": job_id,
        "task": "t",
        "queue": "q",
        "payload": b"null",
        "max_retries": 0,
        "run_at": clock(),
    }
    fields.update(kw)
    return NewJob(**fields)  # type: ignore[arg-type]


def done(job: Job, kind: OutcomeKind, **kw: object) -> Outcome:
    return Outcome(job_id=job.id, token=job.token, kind=kind, **kw)  # type: ignore[arg-type]


def order(jobs: list[Job]) -> list[tuple[float, str]]:
    return [(j.created_at, j.id) for j in jobs]


async def pages(broker: Broker, size: int, **filters: object) -> list[list[str]]:
    """Every page of a listing, following the cursor of each page's last job."""
    found: list[list[str]] = []
    before: tuple[float, str] | None = None
    while True:
        page = await broker.list_jobs(limit=size, before=before, **filters)  # type: ignore[arg-type]
        if not page:
            return found
        assert len(page) <= size
        found.append([j.id for j in page])
        before = (page[-1].created_at, page[-1].id)
        assert len(found) < 100, "the cursor does not advance"


def counts(stats: QueueStats) -> dict[str, int]:
    """The non-zero counts, by status name."""
    return {status.value: n for status, n in stats.counts.items() if n}


# --- listing -----------------------------------------------------------------------------------


async def test_newest_first_with_ids_breaking_ties_in_byte_order(broker: Broker, clock: FakeClock) -> None:
    await broker.enqueue([new(clock, "m1")])
    clock.advance(1)
    # One batch shares its created_at; byte order puts digits, then upper case, then "_", then
    # lower case (a locale-aware collation would not).
    await broker.enqueue([new(clock, i) for i in ["b", "B", "_x", "a", "0", "Z"]])
    clock.advance(1)
    await broker.enqueue([new(clock, "m3")])
    listed = await broker.list_jobs()
    assert [j.id for j in listed] == ["m3", "b", "a", "_x", "Z", "B", "0", "m1"]
    assert order(listed) == sorted(order(listed), reverse=True)


async def test_pages_follow_the_cursor_through_ties(broker: Broker, clock: FakeClock) -> None:
    for batch in range(4):
        await broker.enqueue([new(clock, f"j{batch}-{i}") for i in range(5)])
        clock.advance(0.25)
    everything = [j.id for j in await broker.list_jobs(limit=1000)]
    assert len(everything) == 20
    for size in (1, 3, 5, 7, 20):
        got = await pages(broker, size)
        assert [i for page in got for i in page] == everything, f"pages of {size}"
        assert all(len(page) == size for page in got[:-1])


async def test_a_cursor_whose_job_is_gone_still_pages_on(broker: Broker, clock: FakeClock) -> None:
    await broker.enqueue([new(clock, f"a{i}") for i in range(6)])  # one created_at for all
    clock.advance(1)
    await broker.enqueue([new(clock, f"b{i}") for i in range(3)])
    first = await broker.list_jobs(limit=5)
    assert [j.id for j in first] == ["b2", "b1", "b0", "a5", "a4"]
    cursor = (first[-1].created_at, first[-1].id)
    assert await broker.delete("a4") is True
    assert [j.id for j in await broker.list_jobs(limit=3, before=cursor)] == ["a3", "a2", "a1"]
    # A cursor that names no job at all: everything strictly after it.
    assert [j.id for j in await broker.list_jobs(before=(first[-1].created_at, "a25"))] == ["a2", "a1", "a0"]
    assert await broker.list_jobs(before=(first[-1].created_at - 1, "zzz")) == []


async def test_filters_page_with_the_same_cursor(broker: Broker, clock: FakeClock) -> None:
    for i in range(12):
        queue, task = ("q", "alpha") if i % 3 else ("other", "beta")
        await broker.enqueue([new(clock, f"j{i:02}", queue=queue, task=task)])
        clock.advance(1)
    # Fail every job of q whose number is even, succeed the others.
    for job in await broker.claim("q", 100, lease=LEASE, worker="w"):
        kind = OutcomeKind.FAILED if int(job.id[1:]) % 2 == 0 else OutcomeKind.SUCCEEDED
        assert await broker.complete([done(job, kind, error="boom")]) == [True]
    failed = [f"j{i:02}" for i in reversed(range(12)) if i % 3 and i % 2 == 0]
    assert [i for p in await pages(broker, 2, status=JobStatus.FAILED) for i in p] == failed
    assert [i for p in await pages(broker, 2, queue="other") for i in p] == ["j09", "j06", "j03", "j00"]
    assert [i for p in await pages(broker, 3, task="beta", status=JobStatus.QUEUED) for i in p] == [
        "j09",
        "j06",
        "j03",
        "j00",
    ]
    narrow = await pages(broker, 1, status=JobStatus.FAILED, queue="q", task="alpha")
    assert [i for p in narrow for i in p] == failed
    assert await broker.list_jobs(status=JobStatus.FAILED, queue="other") == []


async def test_children_page_newest_first(broker: Broker, clock: FakeClock) -> None:
    await broker.enqueue([new(clock, "p", pending=4)])
    for i in range(4):
        clock.advance(1)
        await broker.enqueue([new(clock, f"p:{i}", parent_id="p", queue="kids" if i % 2 else "q")])
    assert [i for p in await pages(broker, 3, parent_id="p") for i in p] == ["p:3", "p:2", "p:1", "p:0"]
    assert [j.id for j in await broker.list_jobs(parent_id="p", queue="kids")] == ["p:3", "p:1"]


async def test_expired_jobs_are_neither_listed_nor_counted(broker: Broker, clock: FakeClock) -> None:
    await broker.enqueue([new(clock, "old", queue="gone"), new(clock, "kept")])
    [job] = await broker.claim("gone", 1, lease=LEASE, worker="w")
    await broker.complete([done(job, OutcomeKind.SUCCEEDED, expires_at=clock() + 10)])
    assert [j.id for j in await broker.list_jobs(status=JobStatus.SUCCEEDED)] == ["old"]
    assert [s.queue for s in await broker.queue_stats()] == ["gone", "q"]
    clock.advance(10)
    assert [j.id for j in await broker.list_jobs()] == ["kept"]
    assert await broker.list_jobs(status=JobStatus.SUCCEEDED) == []
    assert [s.queue for s in await broker.queue_stats()] == ["q"]
    assert await broker.prune(100) == 1
    assert [s.queue for s in await broker.queue_stats()] == ["q"]


async def test_random_listings_match_the_jobs_read_one_by_one(broker: Broker, clock: FakeClock) -> None:
    rng = random.Random(15)
    ids: list[str] = []
    for _ in range(10):
        jobs = [
            new(
                clock, f"r{rng.randrange(10**6):06}", queue=rng.choice(["a", "b", "c"]), task=rng.choice("xy")
            )
            for _n in range(rng.randrange(1, 6))
        ]
        await broker.enqueue(jobs)
        ids += [j.id for j in jobs]
        clock.advance(rng.choice([0.0, 0.5, 1.0]))
    for queue in "abc":
        for job in await broker.claim(queue, 100, lease=LEASE, worker="w"):
            kind = rng.choice([OutcomeKind.SUCCEEDED, OutcomeKind.FAILED, OutcomeKind.RELEASE, None])
            if kind is not None:
                await broker.complete([done(job, kind)])
    found = [await broker.get(i) for i in dict.fromkeys(ids)]
    stored = [j for j in found if j is not None]
    filter_sets: list[dict[str, Any]] = [
        {},
        {"queue": "b"},
        {"task": "x"},
        {"status": JobStatus.SUCCEEDED},
        {"status": JobStatus.RUNNING},
    ]
    for filters in filter_sets:
        expected = sorted(
            (j for j in stored if all(getattr(j, k) == v for k, v in filters.items())),
            key=lambda j: (j.created_at, j.id),
            reverse=True,
        )
        for size in (1, 4):
            got = [i for page in await pages(broker, size, **filters) for i in page]
            assert got == [j.id for j in expected], f"{filters} in pages of {size}"


# --- queue statistics ----------------------------------------------------------------------------


async def test_queue_stats_count_every_status(broker: Broker, clock: FakeClock) -> None:
    assert await broker.queue_stats() == []
    await broker.enqueue(
        [
            new(clock, "queued"),
            new(clock, "later", run_at=clock() + 60),
            new(clock, "run", priority=5),
            new(clock, "ok", priority=5),
            new(clock, "bad", priority=5),
            new(clock, "stop", queue="other"),
            new(clock, "parent", queue="other", pending=1),
            new(clock, "park", queue="other"),
        ]
    )
    claimed = {j.id: j for j in await broker.claim("q", 3, lease=LEASE, worker="w")}
    assert set(claimed) == {"run", "ok", "bad"}
    await broker.complete(
        [
            done(claimed["ok"], OutcomeKind.SUCCEEDED, expires_at=clock() + 100),
            done(claimed["bad"], OutcomeKind.FAILED, error="boom"),
        ]
    )
    await broker.cancel("stop", expires_at=None)
    await broker.pause("park")
    stats = await broker.queue_stats()
    assert [s.queue for s in stats] == ["other", "q"]
    other, q = stats
    assert set(q.counts) == set(JobStatus), "every status is present, zeros included"
    assert counts(q) == {"queued": 1, "scheduled": 1, "running": 1, "succeeded": 1, "failed": 1}
    assert counts(other) == {"cancelled": 1, "waiting": 1, "paused": 1}
    assert q.total == 5 and other.count(JobStatus.QUEUED) == 0


async def test_queue_stats_follow_every_transition(broker: Broker, clock: FakeClock) -> None:
    async def now_counts() -> dict[str, dict[str, int]]:
        return {s.queue: counts(s) for s in await broker.queue_stats()}

    await broker.enqueue([new(clock, "p", pending=1), new(clock, "c", parent_id="p", queue="kids")])
    assert await now_counts() == {"q": {"waiting": 1}, "kids": {"queued": 1}}
    [child] = await broker.claim("kids", 1, lease=LEASE, worker="w")
    await broker.complete([done(child, OutcomeKind.FAILED, error="x")])
    assert await now_counts() == {"q": {"queued": 1}, "kids": {"failed": 1}}
    assert (await broker.retry("c")) is not None
    assert await now_counts() == {"q": {"queued": 1}, "kids": {"queued": 1}}
    await broker.pause("c")
    assert await now_counts() == {"q": {"queued": 1}, "kids": {"paused": 1}}
    await broker.resume("c")
    assert await now_counts() == {"q": {"queued": 1}, "kids": {"queued": 1}}
    [parent] = await broker.claim("q", 1, lease=LEASE, worker="w")
    clock.advance(LEASE + 1)
    assert await broker.rescue_expired(10) == 1  # no retries left: failed
    assert await now_counts() == {"q": {"failed": 1}, "kids": {"queued": 1}}
    assert parent.id == "p" and await broker.delete("p") is True
    await broker.cancel("c", expires_at=clock() + 5)
    assert await now_counts() == {"kids": {"cancelled": 1}}
    clock.advance(5)
    assert await now_counts() == {}
    await broker.prune(10)
    await broker.enqueue([new(clock, "c", queue="kids")])  # the id again, after its expiry
    assert await now_counts() == {"kids": {"queued": 1}}


async def test_oldest_ready_job(broker: Broker, clock: FakeClock) -> None:
    start = clock()
    await broker.enqueue([new(clock, "far", run_at=start + 100)])
    [stats] = await broker.queue_stats()
    assert stats.oldest_ready_at is None, "a job scheduled for later is not ready"
    await broker.enqueue([new(clock, "low", priority=0)])
    clock.advance(5)
    # Claim order puts higher priorities first, yet the oldest ready job is the low one.
    await broker.enqueue([new(clock, "high", priority=9), new(clock, "due", run_at=start + 7)])
    [stats] = await broker.queue_stats()
    assert stats.oldest_ready_at == pytest.approx(start)
    assert stats.oldest_ready_age(start + 30) == pytest.approx(30)
    claimed = await broker.claim("q", 2, lease=LEASE, worker="w")
    assert {j.id for j in claimed} == {"high", "low"}
    [stats] = await broker.queue_stats()
    assert stats.oldest_ready_at is None, "the scheduled one is not due yet"
    clock.advance(3)  # "due" is due, not yet promoted: ready all the same
    [stats] = await broker.queue_stats()
    assert stats.oldest_ready_at == pytest.approx(start + 7)
    assert stats.count(JobStatus.SCHEDULED) == 2


async def test_app_queue_stats_include_its_empty_queues(broker: Broker, clock: FakeClock) -> None:
    app = App(broker, clock=clock)

    @app.task(queue="emails")
    async def send(ctx: JobCtx) -> None:
        return None

    await broker.enqueue([new(clock, "x", queue="zzz")])
    stats = await app.queue_stats()
    assert [(s.queue, s.total) for s in stats] == [("emails", 0), ("zzz", 1)]
