"""What every chaos test shares: CLI worker processes, publishing, the ledger's verdict, the report.

A chaos test publishes jobs of ``tests.chaos.chaosapp``, runs real ``python -m asynctask worker``
processes against a broker, breaks something (kills workers, restarts the server, resets or
stalls connections), and then judges the run from two sources that do not trust each other: the
broker (which jobs succeeded) and the ledger the handlers wrote outside the queue (which runs
really happened, in which process). :class:`Ledger` turns the second into figures.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import anyio

from asynctask import App, JobStatus
from asynctask.errors import BrokerError
from asynctask.models import Job
from tests.workerprocs import wait_for

ROOT = Path(__file__).resolve().parents[2]
APP = "tests.chaos.chaosapp:app"
QUEUE = "chaos"
#: Every finished read of the broker is paged by this many jobs.
PAGE = 1000


def long_run() -> bool:
    """``ASYNCTASK_CHAOS_LONG=1``: the long, on-demand version (tests/chaos/README.md)."""
    return os.environ.get("ASYNCTASK_CHAOS_LONG", "") not in ("", "0")


# --- workers ------------------------------------------------------------------------------------


@dataclass
class WorkerProcess:
    slot: int
    process: subprocess.Popen[bytes]
    stderr: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        return self.stderr.read_text(errors="replace")

    def started(self) -> bool:
        return "action=worker_started" in self.log() or " started: broker " in self.log()


@dataclass
class Workers:
    """CLI worker processes on one broker URL; kills are recorded (pid → time of the SIGKILL)."""

    url: str
    directory: Path
    ledger: Path
    options: Sequence[str] = ()
    env: dict[str, str] = field(default_factory=dict)
    running: dict[int, WorkerProcess] = field(default_factory=dict)
    every: list[WorkerProcess] = field(default_factory=list)
    kills: dict[int, float] = field(default_factory=dict)
    forced: list[int] = field(default_factory=list)
    #: Workers SIGTERMed mid-run (pid → time): like a kill, a stop while the broker is unreachable
    #: can leave outcomes unreported, so a job may rightly run again.
    stops: dict[int, float] = field(default_factory=dict)

    def start(self, slot: int) -> WorkerProcess:
        stderr = self.directory / f"worker-{slot}-{len(self.every)}.err"
        env = {k: v for k, v in os.environ.items() if not k.startswith("ASYNCTASK_")}
        env.update(self.env, CHAOS_LEDGER=str(self.ledger), PYTHONUNBUFFERED="1")
        with stderr.open("wb") as err:
            process = subprocess.Popen(
                [sys.executable, "-m", "asynctask", "worker", APP, "--broker", self.url, *self.options],
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
        worker = WorkerProcess(slot, process, stderr)
        self.running[slot] = worker
        self.every.append(worker)
        return worker

    def start_all(self, count: int, *, ready_timeout: float = 60.0) -> None:
        for slot in range(count):
            self.start(slot)
        self.wait_ready(ready_timeout)

    def wait_ready(self, timeout: float = 60.0) -> None:
        def ready() -> bool:
            for worker in self.running.values():
                if worker.process.poll() is not None:
                    raise AssertionError(f"worker {worker.pid} exited at start:\n{worker.log()}")
            return all(worker.started() for worker in self.running.values())

        wait_for(ready, timeout, "every worker started")

    def kill(self, slot: int) -> int:
        worker = self.running.pop(slot)
        worker.process.send_signal(signal.SIGKILL)
        self.kills[worker.pid] = time.time()
        worker.process.wait(timeout=30)
        return worker.pid

    def terminate(self, timeout: float) -> float:
        """SIGTERM every running worker mid-run; the longest time one took to exit. A worker
        still alive after ``timeout`` s is SIGKILLed and remembered in :attr:`forced`."""
        sent = time.monotonic()
        for worker in self.running.values():
            worker.process.send_signal(signal.SIGTERM)
            self.stops[worker.pid] = time.time()
        longest = 0.0
        for worker in self.running.values():
            try:
                worker.process.wait(timeout=max(0.1, sent + timeout - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.forced.append(worker.pid)
                worker.process.kill()
                worker.process.wait(timeout=30)
            longest = max(longest, time.monotonic() - sent)
        self.running.clear()
        return longest

    def dead(self) -> list[WorkerProcess]:
        """Running workers that exited on their own (a crash the test did not cause)."""
        return [w for w in self.running.values() if w.process.poll() is not None]

    def stop_all(self, timeout: float = 12.0) -> None:
        """SIGTERM every running worker and wait ``timeout`` s; SIGKILL whatever is left (and
        remember it in :attr:`forced`: a worker must stop within its shutdown grace plus its
        broker timeout, whatever the broker does)."""
        for worker in self.running.values():
            if worker.process.poll() is None:
                worker.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for worker in self.every:
            try:
                worker.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.forced.append(worker.pid)
                worker.process.kill()
                worker.process.wait(timeout=30)

    def logs(self) -> str:
        return "\n".join(f"--- worker {w.slot} pid {w.pid}\n{w.log()[-3000:]}" for w in self.every)


# --- the broker, from the test process ------------------------------------------------------------


def app_on(url: str) -> App:
    """The chaos app (closed), on ``url``: every read and publish of the test goes through it."""
    from tests.chaos import chaosapp

    chaosapp.app.set_broker(url)
    return chaosapp.app


def publish(url: str, task: str, payloads: Iterable[Any], ids: Iterable[str]) -> list[str]:
    """Publish jobs of ``task`` with the given ids in batches; returns the ids."""
    app = app_on(url)
    ids = list(ids)
    specs = [app.tasks[task].spec(p, job_id=i) for p, i in zip(payloads, ids, strict=True)]

    async def go() -> None:
        async with app:
            for start in range(0, len(specs), PAGE):
                await app.publish_many(specs[start : start + PAGE])

    anyio.run(go)
    return ids


def counts(url: str) -> dict[JobStatus, int]:
    """The queue's live jobs by status (one cheap call; ``{}`` while the broker is away)."""

    async def go() -> dict[JobStatus, int]:
        async with app_on(url) as app:
            for stats in await app.broker.queue_stats():
                if stats.queue == QUEUE:
                    return dict(stats.counts)
        return {}

    try:
        return anyio.run(go)
    except (BrokerError, OSError):  # the broker is down or restarting: poll again
        return {}


def jobs(url: str) -> dict[str, Job]:
    """Every job of the broker, by id (paged)."""

    async def go() -> dict[str, Job]:
        found: dict[str, Job] = {}
        async with app_on(url) as app:
            before: tuple[float, str] | None = None
            while True:
                page = await app.list_jobs(queue=QUEUE, limit=PAGE, before=before)
                found.update((job.id, job) for job in page)
                if len(page) < PAGE:
                    return found
                before = (page[-1].created_at, page[-1].id)

    return anyio.run(go)


def wait_finished(url: str, total: int, timeout: float, workers: Workers | None = None) -> None:
    """Poll until ``total`` jobs are finished (succeeded or failed), or fail with the counts."""
    seen: dict[JobStatus, int] = {}

    def done() -> bool:
        nonlocal seen
        if workers is not None and workers.dead():
            crashed = workers.dead()[0]
            raise AssertionError(f"worker {crashed.pid} died:\n{crashed.log()[-3000:]}")
        seen = counts(url) or seen
        return seen.get(JobStatus.SUCCEEDED, 0) + seen.get(JobStatus.FAILED, 0) >= total

    try:
        wait_for(done, timeout, f"{total} jobs finished", interval=0.2)
    except TimeoutError as exc:
        logs = workers.logs() if workers is not None else ""
        raise AssertionError(f"{exc}; last counts {seen}\n{logs}") from None


def progress(url: str, fraction: float, total: int, workers: Workers) -> None:
    """Poll until ``fraction`` of ``total`` jobs succeeded (a fault's moment in the run)."""

    def reached() -> bool:
        assert not workers.dead(), workers.logs()
        return counts(url).get(JobStatus.SUCCEEDED, 0) >= fraction * total

    wait_for(reached, 60, f"{fraction:.0%} of the jobs succeeded", interval=0.1)


def recovered(ledger: Ledger, workers: Workers, moment: float, timeout: float) -> float:
    """Seconds from ``moment`` until every running worker started a job it claimed after it."""
    pids = {worker.pid for worker in workers.running.values()}

    def back() -> bool:
        assert not workers.dead(), workers.logs()
        return pids <= set(ledger.starts_after(moment))

    try:
        wait_for(back, timeout, "every worker started a job after the fault", interval=0.1)
    except TimeoutError as exc:
        raise AssertionError(f"{exc}\n{workers.logs()}") from None
    first = ledger.starts_after(moment)
    return max(first[pid] for pid in pids) - moment


# --- the ledger --------------------------------------------------------------------------------------


@dataclass
class Run:
    job: str
    attempt: int
    pid: int
    start: float
    claimed: float
    end: float | None = None


@dataclass
class Verdict:
    """Duplicated: jobs run more than once. Explained: every earlier run of such a job was in a
    process SIGKILLed after that run started, and the run had not ended, or had ended less than
    ``unreported`` seconds before the kill (its outcome was still on its way to the broker); or
    its claim came less than ``forgotten`` seconds before a server crash that may forget it (a
    PostgreSQL claim commits without waiting for its WAL flush: README, Delivery guarantees)."""

    duplicated: int
    explained: int
    unexplained: list[str]
    unfinished_not_killed: list[str]


class Ledger:
    def __init__(self, path: Path) -> None:
        self.path = path

    def runs(self) -> dict[str, list[Run]]:
        found: dict[tuple[str, int, int], Run] = {}
        if self.path.exists():
            # The last element is "" or a line still being written (read while appended to).
            for line in self.path.read_text().split("\n")[:-1]:
                event, job, attempt, pid, at, claimed = line.split()
                key = (job, int(attempt), int(pid))
                if event == "start":
                    found[key] = Run(job, int(attempt), int(pid), float(at), float(claimed))
                else:
                    found[key].end = float(at)
        by_job: dict[str, list[Run]] = {}
        for run in sorted(found.values(), key=lambda r: r.start):
            by_job.setdefault(run.job, []).append(run)
        return by_job

    def starts_after(self, moment: float) -> dict[int, float]:
        """Per pid, the first start of a run it claimed after ``moment`` (a job it had claimed
        before does not show it can reach the broker)."""
        first: dict[int, float] = {}
        for runs in self.runs().values():
            for run in runs:
                if run.claimed >= moment and run.start < first.get(run.pid, float("inf")):
                    first[run.pid] = run.start
        return first

    def verdict(
        self,
        kills: dict[int, float],
        *,
        unreported: float,
        crashes: Sequence[float] = (),
        forgotten: float = 0.0,
    ) -> Verdict:
        duplicated = explained = 0
        unexplained: list[str] = []
        unfinished: list[str] = []
        for job, runs in self.runs().items():
            for run in runs[:-1] if len(runs) > 1 else []:
                if run.end is None and run.pid not in kills:
                    unfinished.append(job)
            if len(runs) < 2:
                continue
            duplicated += 1
            ok = all(
                (
                    run.pid in kills
                    and kills[run.pid] >= run.start
                    and (run.end is None or kills[run.pid] - run.end < unreported)
                )
                or any(0 <= crash - run.claimed < forgotten for crash in crashes)
                for run in runs[:-1]
            )
            if ok:
                explained += 1
            else:
                unexplained.append(job)
        return Verdict(duplicated, explained, unexplained, unfinished)

    def recovery_after_kills(self, kills: dict[int, float]) -> float:
        """Longest time from a SIGKILL to the next start of a job its victim left unfinished.

        Only the very next attempt counts: when attempts are missing in between, another kill took
        the job's next claim before it started, and the gap would add two recoveries up."""
        longest = 0.0
        for runs in self.runs().values():
            for earlier, later in itertools.pairwise(runs):
                killed = kills.get(earlier.pid)
                if killed is not None and earlier.end is None and later.attempt == earlier.attempt + 1:
                    longest = max(longest, later.start - killed)
        return longest


# --- the report --------------------------------------------------------------------------------------


@dataclass
class Figures:
    test: str
    broker: str
    published: int
    succeeded: int
    lost: int
    duplicated: int
    explained_duplicates: int
    #: Explained by a SIGKILL, or by a SIGTERM while the broker was unreachable (``stops``).
    kills: int
    recovery_seconds: float
    seconds: float
    extra: dict[str, Any] = field(default_factory=dict)

    def line(self) -> str:
        return json.dumps(
            {**asdict(self), "long": long_run(), "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        )

    def summary(self) -> str:
        text = (
            f"{self.test}[{self.broker}]: published {self.published}, succeeded {self.succeeded}, "
            f"lost {self.lost}, duplicated {self.duplicated} ({self.explained_duplicates} explained by "
            f"kills or stops), kills {self.kills}, recovery {self.recovery_seconds:.1f} s, "
            f"run {self.seconds:.1f} s"
        )
        extra = ", ".join(f"{k} {v}" for k, v in self.extra.items())
        return f"{text}{', ' + extra if extra else ''}"


def judge(
    *,
    test: str,
    broker: str,
    url: str,
    published: Sequence[str],
    ledger: Ledger,
    recovery: float,
    started: float,
    report: Callable[[Figures], None],
    workers: Workers,
    unreported: float = 2.0,
    crashes: Sequence[float] = (),
    forgotten: float = 0.0,
    extra: dict[str, Any] | None = None,
) -> tuple[Figures, dict[str, Job]]:
    """Read the outcome back, write the figures, then assert: nothing lost, no unexplained
    duplicate, every job that succeeded ran to its end at least once."""
    stored = jobs(url)
    succeeded = {job_id for job_id, job in stored.items() if job.status is JobStatus.SUCCEEDED}
    lost = sorted(set(published) - succeeded)
    kills = workers.kills
    verdict = ledger.verdict(
        {**workers.stops, **kills}, unreported=unreported, crashes=crashes, forgotten=forgotten
    )
    figures = Figures(
        test=test,
        broker=broker,
        published=len(published),
        succeeded=len(succeeded & set(published)),
        lost=len(lost),
        duplicated=verdict.duplicated,
        explained_duplicates=verdict.explained,
        kills=len(kills),
        recovery_seconds=round(recovery, 2),
        seconds=round(time.time() - started, 1),
        extra=extra or {},
    )
    report(figures)
    statuses = {job_id: stored[job_id].status for job_id in lost if job_id in stored}
    assert not lost, f"{len(lost)} jobs lost, e.g. {lost[:5]} (status {statuses if statuses else 'missing'})"
    unexplained = verdict.unexplained[:10]
    assert not unexplained, f"duplicates not explained by a kill or a crash: {unexplained}"
    runs = ledger.runs()
    unended = [job for job in succeeded if not any(run.end is not None for run in runs.get(job, []))]
    assert not unended, f"succeeded without a finished run in the ledger: {unended[:10]}"
    assert not workers.forced, f"workers {workers.forced} ignored SIGTERM (SIGKILLed)\n{workers.logs()}"
    return figures, stored
