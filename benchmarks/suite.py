"""Running every selected system through every workload, alternating, and summarising."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import time
import uuid
from dataclasses import dataclass
from typing import Any

from benchmarks import harness
from benchmarks.systems import System


@dataclass(frozen=True)
class Sizes:
    reps: int
    w1_jobs: int
    w2_jobs: int
    w3_jobs: int
    concurrency: int = 100

    def jobs(self, workload: str) -> int:
        return {"w1": self.w1_jobs, "w2": self.w2_jobs, "w3": self.w3_jobs}[workload]


FULL = Sizes(reps=3, w1_jobs=10_000, w2_jobs=200, w3_jobs=2_000)
QUICK = Sizes(reps=1, w1_jobs=2_000, w2_jobs=50, w3_jobs=500)

#: Metrics whose median is reported, per workload.
METRICS = {
    "w1": ["jobs_per_s", "enqueue_per_s", "bulk_per_s", "drain_s", "startup_s", "worker_cpu_us_per_job"],
    "w2": ["p50_ms", "p99_ms", "mean_ms", "max_ms", "publish_call_p50_ms", "after_publish_p50_ms"],
    "w3": ["wall_s", "drain_s", "avg_running", "sleep_overrun_ms"],
}


def run_one(
    system: System, workload: str, sizes: Sizes, *, extra: list[str] | None = None, timeout: float = 240.0
) -> dict[str, Any]:
    """Run one workload of one system in its own interpreter; returns its result dict."""
    run_id = uuid.uuid4().hex[:8]
    command = [
        *system.command(workload),
        "--jobs",
        str(sizes.jobs(workload)),
        "--concurrency",
        str(sizes.concurrency),
        "--run-id",
        run_id,
        "--timeout",
        str(timeout - 30),
        *(extra or []),
    ]
    env = {**os.environ}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(harness.PROJECT), env.get("PYTHONPATH")]))
    started = time.monotonic()
    try:
        proc = subprocess.run(
            command,
            cwd=harness.PROJECT,
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
    result.update(system=system.name, broker=system.broker, workload=workload, run_id=run_id)
    result["elapsed_s"] = time.monotonic() - started
    if not result.get("ok"):
        result.setdefault("error", "incomplete")
        result["stderr_tail"] = stderr.strip()[-1500:]
    return result


def median(values: list[float]) -> float | None:
    clean = [v for v in values if v is not None]
    return statistics.median(clean) if clean else None


def summarise(runs: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """system -> workload -> {metric: median, lost: total, duplicates: total, reps: ok runs}."""
    summary: dict[str, dict[str, dict[str, Any]]] = {}
    for run in runs:
        cell = summary.setdefault(run["system"], {}).setdefault(
            run["workload"],
            {"reps": 0, "failed": 0, "lost": 0, "duplicates": 0, "unfinished": 0, "_values": {}},
        )
        cell["lost"] += run.get("lost", 0) or 0
        cell["unfinished"] += run.get("unfinished", 0) or 0
        cell["duplicates"] += run.get("duplicates", 0) or 0
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
