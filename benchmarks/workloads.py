"""The workloads every system runs, written once (W4 and W5, asynctask's alone, are in
:mod:`benchmarks.peers.asynctask_workloads`).

* **W1** (``w1``): at C = 100, bulk-enqueue N no-op jobs where the library has a bulk API
  (timed, then wiped) and enqueue them one by one, each awaited (timed); at the other
  concurrencies of the sweep (``--fill-only``) just fill the queue as fast as the library
  allows (untimed). Then start the worker(s); ``jobs_per_s`` counts from the first handler
  start to the last one (start-up excluded, the same for everyone); ``drain_s`` is from spawning
  the worker to the last handler. The workers' peak RSS is read before they stop.
* **W2** (``w2``): start a worker, wait until it has run a warm-up job, let it idle (a fleet of
  processes as long again as the first took to be ready), then publish N jobs 10 ms apart;
  latency = handler start - publish call (both ``time.time()``, same host).
* **W3** (``w3``): enqueue N jobs of ``await asyncio.sleep(0.05)``; start the worker(s);
  ``wall_s`` = last handler end - first handler start.

Standard library only: this module runs in every peer's venv.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

from benchmarks.driver import NOOP, SLEEP, SLEEP_SECONDS, Driver
from benchmarks.processes import Fleet, WorkerProcess
from benchmarks.records import Records, percentile
from benchmarks.services import log

__all__ = ["Run"]


class Run:
    """One workload run of one driver."""

    def __init__(self, driver: Driver, args: argparse.Namespace, workdir: Path) -> None:
        self.driver = driver
        self.args = args
        self.workdir = workdir
        self.record_path = workdir / "record.txt"
        self.records = Records(self.record_path)
        self.fleets: list[Fleet] = []
        self.profiler: subprocess.Popen[bytes] | None = None
        self.error: str | None = None

    def start_worker(
        self,
        kind: str = NOOP,
        *,
        command: list[str] | None = None,
        env: dict[str, str] | None = None,
        label: str = "worker",
        copies: int | None = None,
    ) -> Fleet:
        """Start the driver's worker(s) for ``kind`` (or ``command``): one forking CLI, or
        ``settings["processes"]`` copies (or ``copies``) of a command that runs one process."""
        full_env = {"BENCH_RECORD": str(self.record_path), **self.driver.worker_env(), **(env or {})}
        command = command or self.driver.worker_command(kind)
        if copies is None:
            copies = 1 if self.driver.forks else self.driver.processes
        times = f" x {copies}" if copies > 1 else ""
        log(f"{self.driver.name}: starting {label}{times}: {' '.join(command)}")
        members = [WorkerProcess(command, full_env, self.workdir / f"{label}-{n}.log") for n in range(copies)]
        fleet = Fleet(members)
        self.fleets.append(fleet)
        return fleet

    def _start_profiler(self, pid: int) -> None:
        out = Path(self.args.profile)
        cmd = [
            self.args.py_spy,
            "record",
            "--pid",
            str(pid),
            "--rate",
            "250",
            "--format",
            "speedscope",
            "--output",
            str(out),
            "--nonblocking",
            # A forking CLI's main process is a supervisor: sample its workers too.
            "--subprocesses",
        ]
        self.profiler = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def _stop_profiler(self) -> None:
        if self.profiler is None:
            return
        self.profiler.send_signal(signal.SIGINT)
        try:
            _, err = self.profiler.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.profiler.kill()
            _, err = self.profiler.communicate()
        if self.profiler.returncode not in (0, -signal.SIGINT) and err:
            log(f"py-spy: {err.decode(errors='replace').strip()[-500:]}")
        self.profiler = None

    def stop_workers(self) -> None:
        self._stop_profiler()
        for fleet in self.fleets:
            fleet.stop()

    async def enqueue(self, indices: range, kind: str, *, bulk: bool) -> float:
        """Publish ``indices`` (in bulk chunks, or one by one, each awaited); returns the seconds."""
        started = time.perf_counter()
        if bulk:
            chunk = self.args.bulk_chunk
            for lo in range(indices.start, indices.stop, chunk):
                await self.driver.enqueue_bulk(range(lo, min(lo + chunk, indices.stop)), kind)
        else:
            for i in indices:
                await self.driver.enqueue_one(i, kind)
        return time.perf_counter() - started

    async def drain(
        self, indices: range, fleet: Fleet, timeout: float, *, budget: float | None = None
    ) -> bool:
        """Wait until every job has run (then a little longer, for late duplicates).

        With a ``budget`` (W1), a worker still making progress when the budget is spent is not a
        failure: its rate is measured over the budget and the jobs left count as unfinished.
        """
        wait = timeout if budget is None else min(timeout, budget)
        done = await self.records.wait_for(indices, fleet, timeout=wait, stall=self.args.stall)
        if done:
            # Runs that arrive a little later are duplicates (a redelivery): give them a chance.
            await asyncio.sleep(self.args.settle)
            self.records.poll()
        elif not (budget is not None and self.records.stopped == "timeout" and wait == budget):
            self.give_up(fleet, f"{self.records.seen(indices)} of {len(indices)} ran")
        return done

    def give_up(self, fleet: Fleet, progress: str) -> None:
        log(f"{self.driver.name}: gave up after {progress}; worker log:\n{fleet.tail()}")
        self.error = f"cut short after {time.time() - fleet.started:.0f} s: {progress}"

    async def warm_up(self, fleet: Fleet, index: int = -1) -> None:
        """Publish control job ``index`` and wait until the worker has run it."""
        await self.driver.enqueue_one(index, NOOP)
        if not await self.records.wait_for(range(index, index + 1), fleet, timeout=60, stall=60):
            raise RuntimeError(f"worker never ran the warm-up job:\n{fleet.tail()}")

    def describe(self) -> dict[str, Any]:
        return {
            "concurrency": self.driver.concurrency,
            "processes": self.driver.processes,
            "settings": self.driver.settings,
        }

    async def _publish_w1(self, jobs: range) -> dict[str, Any]:
        """W1's publishing phase at C = 100: bulk rate, then one by one (each awaited)."""
        n = len(jobs)
        result: dict[str, Any] = {"bulk_per_s": None}
        if self.driver.has_bulk:
            elapsed = await self.enqueue(jobs, NOOP, bulk=True)
            result["bulk_per_s"] = n / elapsed
            await self.driver.wipe()
        # Every job, or as many as fit in the time budget; the rest go in bulk (untimed) when the
        # library has a bulk API, so slow publishers stay bounded.
        budget = self.args.enqueue_budget if self.driver.has_bulk else float("inf")
        started = time.perf_counter()
        count = 0
        for i in jobs:
            await self.driver.enqueue_one(i, NOOP)
            count += 1
            if time.perf_counter() - started > budget:
                break
        result["enqueue_per_s"] = count / (time.perf_counter() - started)
        result["enqueued_one_by_one"] = count
        if count < n:
            await self.enqueue(range(count, n), NOOP, bulk=True)
        return result

    async def w1(self) -> dict[str, Any]:
        n = self.args.jobs
        jobs = range(n)
        result: dict[str, Any] = {"jobs": n, **self.describe()}
        if self.args.fill_only:
            await self.driver.fill(jobs, NOOP, chunk=self.args.bulk_chunk)
        else:
            result.update(await self._publish_w1(jobs))
        fleet = self.start_worker(NOOP)
        # Once handlers run: the profile shows the steady state, and the workers' CPU time per
        # job leaves start-up out (steadier than jobs/s when other work shares the cores).
        while self.records.total == 0 and fleet.alive():
            await asyncio.sleep(0.005)
            self.records.poll()
        cpu_start, runs_start = fleet.cpu_seconds(), self.records.total
        if self.args.profile:
            self._start_profiler(fleet.pid)
        done = await self.drain(jobs, fleet, timeout=self.args.timeout, budget=self.args.drain_budget)
        result.update(fleet.peak_rss() or {})
        cpu_end = fleet.cpu_seconds()
        self.records.poll()
        if cpu_start is not None and cpu_end is not None and self.records.total > runs_start:
            result["worker_cpu_us_per_job"] = (cpu_end - cpu_start) / (self.records.total - runs_start) * 1e6
        self.records.poll()
        starts = [s for i in jobs for s, _ in self.records.runs.get(i, [])]
        if len(starts) > 1:
            first, last = min(starts), max(starts)
            result["jobs_per_s"] = (len(starts) - 1) / (last - first) if last > first else None
            result["drain_s"] = last - fleet.started
            result["startup_s"] = first - fleet.started
        # Out of drain budget but still running jobs: a slow system, measured over the budget.
        capped = not done and self.error is None
        result["complete"] = done or capped
        result["capped"] = capped
        result.update(self.records.tally(jobs, complete=done))
        return result

    async def w2(self) -> dict[str, Any]:
        n = self.args.jobs
        jobs = range(n)
        fleet = self.start_worker(NOOP)
        await self.warm_up(fleet)
        # The warm-up job proves one process ready; a fleet's others started with it, so they get
        # as long again as the first one took before the measured publishes start.
        ready = time.time() - fleet.started
        await asyncio.sleep(max(self.args.idle, ready if self.driver.processes > 1 else 0.0))
        published: dict[int, float] = {}
        returned: dict[int, float] = {}
        started = time.perf_counter()
        for i in jobs:
            target = started + i * self.args.interval
            delay = target - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            published[i] = time.time()
            await self.driver.enqueue_one(i, NOOP)
            returned[i] = time.time()
        done = await self.drain(jobs, fleet, timeout=self.args.timeout)
        runs = self.records.runs
        latencies = [(runs[i][0][0] - published[i]) * 1000 for i in jobs if i in runs]
        result: dict[str, Any] = {"jobs": n, "complete": done, "interval_ms": self.args.interval * 1000}
        result.update(self.describe())
        if latencies:
            # Where the latency goes: the publish call itself, and from its return to the handler.
            calls = [(returned[i] - published[i]) * 1000 for i in jobs]
            after = [(runs[i][0][0] - returned[i]) * 1000 for i in jobs if i in runs]
            result.update(
                p50_ms=percentile(latencies, 0.5),
                p99_ms=percentile(latencies, 0.99),
                mean_ms=statistics.fmean(latencies),
                max_ms=max(latencies),
                publish_call_p50_ms=percentile(calls, 0.5),
                after_publish_p50_ms=percentile(after, 0.5),
            )
        result.update(self.records.tally(jobs, complete=done))
        return result

    async def w3(self) -> dict[str, Any]:
        n = self.args.jobs
        jobs = range(n)
        await self.driver.fill(jobs, SLEEP, chunk=self.args.bulk_chunk)
        fleet = self.start_worker(SLEEP)
        done = await self.drain(jobs, fleet, timeout=self.args.timeout)
        self.records.poll()
        spans = [(s, e) for i in jobs for s, e in self.records.runs.get(i, []) if e is not None]
        result: dict[str, Any] = {"jobs": n, "complete": done, **self.describe()}
        if spans:
            first = min(s for s, _ in spans)
            last = max(e for _, e in spans)
            busy = sum(e - s for s, e in spans)
            result["wall_s"] = last - first
            result["drain_s"] = last - fleet.started
            # Diagnostics for a missed target: how full the slots were, and how late sleeps woke.
            result["avg_running"] = busy / (last - first) if last > first else None
            result["sleep_overrun_ms"] = (busy / len(spans) - SLEEP_SECONDS) * 1000
        result.update(self.records.tally(jobs, complete=done))
        return result
