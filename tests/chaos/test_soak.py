"""SIGKILL soak: CLI workers are killed at random moments and restarted while they run jobs.

Every published job must succeed, and a job may run twice only if an earlier run of it was in a
process killed before that run's outcome reached the broker (the ledger says when each run started
and ended, the test when it killed which pid). Recovery: the longest time from a kill to the new
start of a job its victim left unfinished (about the lease plus the maintenance interval).

Short (default): 2,000 jobs, 2 workers, 3 kills in about 7 s. Long (``ASYNCTASK_CHAOS_LONG=1``):
20,000 jobs, 4 workers, 30 kills over about 150 s.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from asynctask import JobStatus
from tests.chaos.harness import Figures, Ledger, Workers, counts, judge, long_run, publish, wait_finished

LEASE = 4.0

#: The long version runs for minutes; the default per-test timeout (120 s) fits the short one.
pytestmark = pytest.mark.timeout(1200 if long_run() else 120)


@dataclass(frozen=True)
class Soak:
    jobs: int
    workers: int
    kills: int
    seconds: float
    concurrency: int = 8

    @property
    def job_seconds(self) -> float:
        """A handler's duration that makes the unbroken run last about ``seconds``."""
        return self.seconds * self.workers * self.concurrency / self.jobs


SHORT = Soak(jobs=2_000, workers=2, kills=3, seconds=7.0)
LONG = Soak(jobs=20_000, workers=4, kills=30, seconds=150.0)


@pytest.mark.parametrize("shared_url", ["postgres", "redis"], indirect=True)
def test_sigkilled_workers_lose_nothing_and_run_twice_only_what_a_kill_interrupted(
    shared_url: str, tmp_path: Path, report: Callable[[Figures], None], broker_name: str
) -> None:
    soak = LONG if long_run() else SHORT
    rng = random.Random(11)  # the kill schedule is random, and the same on every run
    ledger = Ledger(tmp_path / "ledger")
    started = time.time()
    published = publish(shared_url, "work", range(soak.jobs), [f"job-{n}" for n in range(soak.jobs)])
    options = ["-c", str(soak.concurrency), "--lease", str(LEASE), "--maintenance-interval", "0.5"]
    options += ["--poll-interval", "0.5", "--shutdown-grace", "5"]
    workers = Workers(
        shared_url, tmp_path, ledger.path, options, {"CHAOS_JOB_SECONDS": f"{soak.job_seconds:.4f}"}
    )
    gap = soak.seconds / (soak.kills + 1)
    try:
        workers.start_all(soak.workers)
        run_started = time.time()
        for _ in range(soak.kills):
            # A seeded random timer between kills (the fault schedule, not synchronisation); the
            # run may end first, in which case the remaining kills are not made.
            next_kill = time.monotonic() + rng.uniform(0.5, 1.5) * gap
            finished = False
            while time.monotonic() < next_kill and not finished:
                finished = counts(shared_url).get(JobStatus.SUCCEEDED, 0) >= soak.jobs
                time.sleep(0.1)
            if finished:
                break
            assert not workers.dead(), workers.logs()
            candidates = sorted(slot for slot, worker in workers.running.items() if worker.started())
            if not candidates:
                continue  # every worker is still starting: wait for the next tick
            slot = rng.choice(candidates)
            workers.kill(slot)
            workers.start(slot)  # restarted at once, as a supervisor would
        wait_finished(shared_url, soak.jobs, timeout=60 + soak.seconds, workers=workers)
        run_seconds = time.time() - run_started
    finally:
        workers.stop_all()
    assert len(workers.kills) >= (soak.kills + 1) // 2, (
        f"only {len(workers.kills)} kills happened before the end"
    )
    judge(
        test="sigkill-soak",
        broker=broker_name,
        url=shared_url,
        published=published,
        ledger=ledger,
        workers=workers,
        recovery=ledger.recovery_after_kills(workers.kills),
        started=started,
        report=report,
        extra={"workers": soak.workers, "lease": LEASE, "jobs_per_second": round(soak.jobs / run_seconds)},
    )
