"""Running one workload with one driver: ``python -m benchmarks.peers.drive_<system> w1 ...``.

A driver (``benchmarks/peers/drive_*.py``, a :class:`benchmarks.driver.Driver`) says how to
publish one job, publish many, start the worker with the library's own CLI, and wipe its
namespace; :func:`main` runs the workload named on the command line with it (the workloads are
in :mod:`benchmarks.workloads`, asynctask's own W4/W5 in
:mod:`benchmarks.peers.asynctask_workloads`) and prints one ``BENCH_RESULT {json}`` line.

Every handler run is counted by :mod:`benchmarks.apps.record` (a per-run append-only file), not
by the queue: ``lost`` = jobs never run, ``duplicates`` = extra runs.

Standard library only: this module runs in every peer's venv.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import tempfile
import time
import traceback
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from benchmarks.driver import Driver, PeerDriver
from benchmarks.services import log
from benchmarks.workloads import Run

__all__ = ["RESULT_MARKER", "main", "parse_args"]

RESULT_MARKER = "BENCH_RESULT "
WORKLOADS = ("w1", "w2", "w3", "w4", "w5")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Run one benchmark workload with one driver.")
    parser.add_argument("workload", choices=WORKLOADS)
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=100, help="total jobs in flight (C)")
    parser.add_argument("--run-id", default=f"r{os.getpid()}{int(time.time()) % 100000}")
    parser.add_argument("--broker", default="redis", help="asynctask's broker (benchmarks.peers.targets)")
    parser.add_argument(
        "--variant", choices=["metrics", "tracing", "tracing-unset"], help="asynctask: observability on"
    )
    parser.add_argument(
        "--fill-only", action="store_true", help="W1: fill the queue untimed (the concurrency sweep)"
    )
    parser.add_argument("--interval", type=float, default=0.01, help="W2: seconds between publishes")
    parser.add_argument("--idle", type=float, default=0.5, help="W2: seconds the worker idles first")
    parser.add_argument("--lease", type=float, default=3.0, help="W5: the workers' --lease")
    parser.add_argument(
        "--maintenance", type=float, default=1.0, help="W5: the workers' --maintenance-interval"
    )
    parser.add_argument("--timeout", type=float, default=120.0, help="longest wait for the handlers")
    parser.add_argument(
        "--drain-budget",
        type=float,
        default=None,
        help="W1: stop a worker still draining after this many seconds; its rate is measured over them",
    )
    parser.add_argument(
        "--settle", type=float, default=0.3, help="wait for late duplicates after the last job"
    )
    parser.add_argument("--stall", type=float, default=20.0, help="give up after this long without progress")
    parser.add_argument(
        "--enqueue-budget", type=float, default=5.0, help="W1: seconds of one-by-one publishing at most"
    )
    parser.add_argument("--bulk-chunk", type=int, default=10_000, help="jobs per bulk call")
    parser.add_argument("--profile", help="W1: py-spy speedscope output for the worker")
    parser.add_argument("--py-spy", default="py-spy")
    return parser.parse_args(argv)


async def cleanup(driver: Driver) -> None:
    """Tear down even after a failed setup: at least remove the run's namespace."""
    try:
        await driver.teardown()
    except Exception as exc:
        log(f"{driver.name}: teardown failed ({type(exc).__name__}: {exc}); removing the namespace")
        if isinstance(driver, PeerDriver):
            await PeerDriver.teardown(driver)


async def run_workload(driver: Driver, args: argparse.Namespace, result: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory(prefix=f"bench-{args.run_id}-") as tmp:
        run = Run(driver, args, Path(tmp))
        workloads: dict[str, Callable[[], Awaitable[dict[str, Any]]]] = {
            "w1": run.w1,
            "w2": run.w2,
            "w3": run.w3,
        }
        workloads.update({name: partial(fn, run) for name, fn in driver.extra_workloads().items()})
        if args.workload not in workloads:
            result["error"] = f"{driver.name} has no workload {args.workload} (no such feature)"
            return
        try:
            await driver.setup()
            result.update(await workloads[args.workload]())
            result["ok"] = bool(result.get("complete"))
            if run.error:
                result["error"] = run.error
        finally:
            run.stop_workers()
            await cleanup(driver)


def main(factory: Callable[..., Driver], argv: Sequence[str] | None = None) -> None:
    """Run the workload named on the command line with ``factory(run_id, concurrency, broker)``."""
    args = parse_args(argv)
    result: dict[str, Any] = {"workload": args.workload, "run_id": args.run_id, "ok": False}

    async def go() -> None:
        options = {"variant": args.variant} if args.variant else {}
        driver = factory(args.run_id, args.concurrency, args.broker, **options)
        result["system"] = driver.name
        await run_workload(driver, args, result)

    try:
        runner_options: dict[str, Any] = {}
        with contextlib.suppress(ImportError):
            import uvloop

            runner_options["loop_factory"] = uvloop.new_event_loop
        with asyncio.Runner(**runner_options) as runner:
            runner.run(go())
    except Exception as exc:
        traceback.print_exc()
        result["error"] = f"{type(exc).__name__}: {exc}"[:500]
    print(RESULT_MARKER + json.dumps(result), flush=True)
