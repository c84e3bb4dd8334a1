"""What one run of the suite runs: cells (a workload at a concurrency), each in the system's own
interpreter, and the medians.

A cell is named by its workload, plus ``@C`` for W1 at a concurrency of the sweep: ``w1`` is W1 at
C = 100 with its publish rates, ``w1@10``, ``w1@50``, ``w1@200`` are the sweep (queue filled
untimed), then ``w2``-``w5``. W4 and W5 run for asynctask only (no peer has the features).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import time
import uuid
from dataclasses import dataclass
from typing import Any

from benchmarks import harness, services
from benchmarks.systems import System

#: The names ``--workloads`` accepts; ``sweep`` is W1 at the sweep's concurrencies.
WORKLOADS = ("w1", "sweep", "w2", "w3", "w4", "w5")
#: Workloads only asynctask runs.
OURS_ONLY = ("w4", "w5")


@dataclass(frozen=True)
class Sizes:
    reps: int
    w1_jobs: int
    w2_jobs: int
    w3_jobs: int
    w4_jobs: int = 10_000
    w5_jobs: int = 100
    concurrency: int = 100
    sweep: tuple[int, ...] = (10, 50, 200)
    #: W5's --lease and --maintenance-interval (seconds).
    lease: float = 3.0
    maintenance: float = 1.0
    #: W1: a worker still draining this long after its start is stopped and measured over it (a
    #: slow system's rate is stable long before its queue is empty; it keeps the full run short).
    drain_budget: float = 20.0

    def jobs(self, workload: str) -> int:
        return int(getattr(self, f"{workload}_jobs"))

    def concurrencies(self) -> list[int]:
        """Every W1 concurrency, ascending (C = 100 included)."""
        return sorted({self.concurrency, *self.sweep})


#: W1 drains 30,000 jobs: at 30,000 jobs/s that is a second of steady state (10,000 lasted
#: 0.3 s, and one process starting 60 ms after the other moved a cell by 10-20%).
FULL = Sizes(reps=3, w1_jobs=30_000, w2_jobs=200, w3_jobs=2_000, w4_jobs=10_000)
QUICK = Sizes(reps=1, w1_jobs=2_000, w2_jobs=50, w3_jobs=500, w4_jobs=2_000, drain_budget=10.0)

#: Metrics whose median is reported, per workload.
METRICS = {
    "w1": [
        "jobs_per_s",
        "enqueue_per_s",
        "bulk_per_s",
        "drain_s",
        "startup_s",
        "rss_peak_mib",
        "rss_total_mib",
        "worker_cpu_us_per_job",
    ],
    "w2": ["p50_ms", "p99_ms", "mean_ms", "max_ms", "publish_call_p50_ms", "after_publish_p50_ms"],
    "w3": ["wall_s", "drain_s", "avg_running", "sleep_overrun_ms"],
    "w4": [
        "wall_s",
        "to_parent_s",
        "spawn_s",
        "enqueue_children_s",
        "children_s",
        "children_per_s",
        "to_on_finish_s",
        "on_finish_s",
    ],
    "w5": ["recovery_s", "first_rescue_s", "bound_s"],
}


@dataclass(frozen=True)
class Cell:
    workload: str
    concurrency: int
    #: W1 at a sweep concurrency: fill the queue untimed.
    fill_only: bool = False

    @property
    def key(self) -> str:
        return f"{self.workload}@{self.concurrency}" if self.fill_only else self.workload


def cells(system: System, workloads: list[str], sizes: Sizes) -> list[Cell]:
    """The cells ``system`` runs for the selected workloads, in order."""
    out: list[Cell] = []
    for workload in workloads:
        if workload in OURS_ONLY and not system.is_asynctask:
            continue
        if workload == "sweep":
            out += [Cell("w1", c, fill_only=True) for c in sizes.sweep if c != sizes.concurrency]
        else:
            out.append(Cell(workload, sizes.concurrency))
    return out


def run_one(
    system: System, cell: Cell, sizes: Sizes, *, extra: list[str] | None = None, timeout: float = 240.0
) -> dict[str, Any]:
    """Run one cell of one system in its own interpreter; returns its result dict."""
    run_id = uuid.uuid4().hex[:8]
    command = [
        *system.command(cell.workload),
        "--jobs",
        str(sizes.jobs(cell.workload)),
        "--concurrency",
        str(cell.concurrency),
        "--run-id",
        run_id,
        "--timeout",
        str(timeout - 30),
        *(["--fill-only"] if cell.fill_only else []),
        *(["--drain-budget", str(sizes.drain_budget)] if cell.workload == "w1" else []),
        *(
            ["--lease", str(sizes.lease), "--maintenance", str(sizes.maintenance)]
            if cell.workload == "w5"
            else []
        ),
        *(extra or []),
    ]
    env = {**os.environ}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(services.PROJECT), env.get("PYTHONPATH")]))
    started = time.monotonic()
    try:
        proc = subprocess.run(
            command,
            cwd=services.PROJECT,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        stdout, stderr = proc.stdout, proc.stderr
    except subprocess.TimeoutExpired as exc:
        stdout = exc.stdout.decode() if isinstance(exc.stdout, bytes) else exc.stdout or ""
        stderr = "driver timed out"
    result: dict[str, Any] = {}
    for line in stdout.splitlines():
        if line.startswith(harness.RESULT_MARKER):
            result = json.loads(line[len(harness.RESULT_MARKER) :])
    if not result:
        result = {"ok": False, "error": (stderr or "no result").strip()[-800:]}
    result.update(system=system.name, broker=system.broker, workload=cell.workload, cell=cell.key)
    result.update(run_id=run_id, elapsed_s=time.monotonic() - started)
    result.setdefault("concurrency", cell.concurrency)
    if not result.get("ok"):
        result.setdefault("error", "incomplete")
        result["stderr_tail"] = stderr.strip()[-1500:]
    return result


def median(values: list[float]) -> float | None:
    clean = [v for v in values if v is not None]
    return statistics.median(clean) if clean else None


def summarise(runs: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """system -> cell -> {metric: median, lost/duplicates: totals, reps: ok runs, settings}."""
    summary: dict[str, dict[str, dict[str, Any]]] = {}
    for run in runs:
        key = run.get("cell", run["workload"])
        cell = summary.setdefault(run["system"], {}).setdefault(
            key,
            {"reps": 0, "failed": 0, "capped": 0, "lost": 0, "duplicates": 0, "unfinished": 0, "_values": {}},
        )
        cell["lost"] += run.get("lost", 0) or 0
        cell["unfinished"] += run.get("unfinished", 0) or 0
        cell["duplicates"] += run.get("duplicates", 0) or 0
        cell["capped"] += 1 if run.get("capped") else 0
        for field in ("concurrency", "processes", "settings"):
            if run.get(field) is not None:
                cell[field] = run[field]
        if not run.get("ok"):
            cell["failed"] += 1
            cell.setdefault("errors", []).append(run.get("error", "?"))
            continue
        cell["reps"] += 1
        for metric in METRICS[run["workload"]]:
            cell["_values"].setdefault(metric, []).append(run.get(metric))
    for workloads in summary.values():
        for cell in workloads.values():
            values = cell.pop("_values")
            for metric, series in values.items():
                cell[metric] = median(series)
                cell[f"{metric}_all"] = series
    return summary
