"""Poison jobs in a claimed batch: ``sys.exit()``, ``KeyboardInterrupt``, a bare ``BaseException``
and results that cannot be encoded, mixed among good jobs, on CLI workers.

The good jobs succeed exactly once (the ledger says so), every poison job ends ``failed`` with an
error naming what it did, and the workers never exit: each one is still claiming afterwards (a
second wave of good jobs is spread over all of them).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from asynctask import JobStatus
from tests.chaos.harness import Figures, Ledger, Workers, judge, long_run, publish, wait_finished, wait_for

#: What each poison does, and what its job's error must name.
POISONS = {
    "sys.exit": "SystemExit",
    "KeyboardInterrupt": "KeyboardInterrupt",
    "BaseException": "BaseException",
    "lone surrogate": "UnicodeEncodeError",
    "recursive list": "RecursionError",
    "object": "TypeError",
}
GOOD = 200

#: The long version runs for minutes; the default per-test timeout (120 s) fits the short one.
pytestmark = pytest.mark.timeout(1200 if long_run() else 120)
WORKERS = 2


@pytest.mark.parametrize("shared_url", ["postgres", "redis", "mongo", "nats"], indirect=True)
def test_poison_jobs_fail_alone_and_workers_keep_claiming(
    shared_url: str, tmp_path: Path, report: Callable[[Figures], None], broker_name: str
) -> None:
    started = time.time()
    ledger = Ledger(tmp_path / "ledger")
    # One poison of each kind first, in the first claimed batch (batch size = concurrency), with
    # the good jobs behind and between them: publish order is claim order at equal priority.
    kinds = list(POISONS)
    good_jobs = GOOD // 2 if broker_name == "mongo" else GOOD  # mongoeco: tens of jobs a second
    poison_ids = publish(shared_url, "poison", kinds, [f"poison-{i}" for i in range(len(kinds))])
    good = publish(shared_url, "work", range(good_jobs), [f"good-{n}" for n in range(good_jobs)])
    more = publish(shared_url, "poison", kinds, [f"poison-late-{i}" for i in range(len(kinds))])
    workers = Workers(
        shared_url,
        tmp_path,
        ledger.path,
        [
            "-c",
            "16",
            "--prefetch",
            "16",
            "--lease",
            "5",
            "--maintenance-interval",
            "0.5",
            "--poll-interval",
            "0.2",
        ],
    )
    try:
        workers.start_all(WORKERS)
        total = good_jobs + 2 * len(kinds)
        wait_finished(shared_url, total, timeout=60, workers=workers)
        # Still claiming: a second wave runs on every worker (the first run by each pid after now).
        pids = {w.pid for w in workers.running.values()}
        second = time.time()
        wave = publish(shared_url, "work", range(good_jobs), [f"wave-{n}" for n in range(good_jobs)])
        wait_finished(shared_url, total + good_jobs, timeout=60, workers=workers)
        wait_for(
            lambda: pids <= set(ledger.starts_after(second)), 10, "every worker ran a job of the second wave"
        )
        assert not workers.dead(), workers.logs()
    finally:
        workers.stop_all()
    broker = broker_name
    _, stored = judge(
        test="poison",
        broker=broker,
        url=shared_url,
        published=[*good, *wave],
        ledger=ledger,
        workers=workers,
        recovery=0.0,
        started=started,
        report=report,
        extra={"poison": len(poison_ids) + len(more)},
    )
    runs = ledger.runs()
    assert all(len(runs[job]) == 1 for job in [*good, *wave]), "a good job ran more than once"
    for ids in (poison_ids, more):
        for job_id, (kind, name) in zip(ids, POISONS.items(), strict=True):
            job = stored[job_id]
            assert job.status is JobStatus.FAILED, (kind, job.status, job.error)
            assert job.error is not None and name in job.error, (kind, job.error)
            assert len(runs[job_id]) == 1, f"{kind} ran {len(runs[job_id])} times"
    for worker in workers.every:
        assert worker.process.returncode == 0, worker.log()[-3000:]
