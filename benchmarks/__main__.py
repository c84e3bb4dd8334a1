"""``python -m benchmarks``: asynctask and its peers, each at its documented best settings, one run.

    python -m benchmarks                          # the full suite (25-45 min on a quiet 2-core box)
    python -m benchmarks --quick                  # a smoke run (~6 min; 7 at load 8 before NATS)
    python -m benchmarks --systems asynctask-redis,arq,saq --workloads w1,sweep
    python -m benchmarks --profile                # + a py-spy profile of the asynctask worker in W1

Peers are installed on first use into ``benchmarks/.venvs/`` (``python -m benchmarks.setup_peers``).
Results go to ``benchmarks/results/``: ``results.json`` (raw runs), ``results.md``, ``chart.png``.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from dataclasses import asdict, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks import environment, report, services, setup_peers, suite
from benchmarks.nats_server import nats_for
from benchmarks.systems import DEFAULT_SYSTEMS, SYSTEMS
from benchmarks.tuning import TUNING

RESULTS = services.ROOT / "results"

#: Rough seconds per cell (full, quick), for the estimate printed first: the full figures are the
#: means of the 2026-11-28 11:35 run (30,000-job W1, an Intel 2-core machine on which the full run
#: took 45 min; an AMD one ran everything about twice as fast); slow systems hit W1's drain budget
#: (20 s, quick 10 s).
CELL_SECONDS = {
    "w1": (20, 8),
    "sweep": (16, 5),
    "w2": (5, 3.5),
    "w3": (4.5, 3.5),
    "w4": (5.5, 2.5),
    "w5": (5, 4.5),
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 repetition, smaller workloads")
    parser.add_argument(
        "--systems",
        default=",".join(DEFAULT_SYSTEMS),
        help=f"comma-separated subset of: {', '.join(SYSTEMS)} (default: all but the observability "
        "variants and asynctask-mongo, which needs BENCH_MONGO_URL)",
    )
    parser.add_argument(
        "--workloads",
        default=",".join(suite.WORKLOADS),
        help=f"comma-separated subset of {','.join(suite.WORKLOADS)} (sweep: W1 at the --sweep C)",
    )
    parser.add_argument("--sweep", default="10,50,200", help="W1's other concurrencies (default 10,50,200)")
    parser.add_argument("--reps", type=int, help="repetitions (default 3, --quick 1)")
    parser.add_argument("--profile", action="store_true", help="py-spy the asynctask worker during W1")
    parser.add_argument(
        "--out", type=Path, help="output directory (default benchmarks/results/, --quick: results/quick/)"
    )
    parser.add_argument("--no-setup", action="store_true", help="do not install missing peer venvs")
    parser.add_argument("--no-chart", action="store_true")
    parser.add_argument(
        "--report-only", action="store_true", help="re-render results.md and chart.png from results.json"
    )
    args = parser.parse_args(argv)
    args.systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    unknown = [s for s in args.systems if s not in SYSTEMS]
    if unknown:
        parser.error(f"unknown system(s): {', '.join(unknown)}; known: {', '.join(SYSTEMS)}")
    if any(SYSTEMS[s].broker == "mongo" for s in args.systems) and not os.environ.get("BENCH_MONGO_URL"):
        parser.error("asynctask-mongo needs BENCH_MONGO_URL (see benchmarks/README.md, MongoDB)")
    args.workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
    if set(args.workloads) - set(suite.WORKLOADS):
        parser.error(f"workloads are {', '.join(suite.WORKLOADS)}")
    try:
        args.sweep = tuple(int(c) for c in args.sweep.split(",") if c.strip())
    except ValueError:
        parser.error(f"--sweep takes comma-separated concurrencies, not {args.sweep!r}")
    if any(c < 1 for c in args.sweep):
        parser.error("--sweep concurrencies must be at least 1")
    return args


def ensure_venvs(names: list[str], install: bool) -> list[str]:
    """The systems whose venv is ready (installing missing ones unless told not to)."""
    ready = []
    for name in names:
        venv = SYSTEMS[name].venv
        if venv is None or setup_peers.is_ready(venv) or (install and setup_peers.install(venv)):
            ready.append(name)
        else:
            print(f"skipping {name}: its venv is missing (python -m benchmarks.setup_peers {venv})")
    return ready


def estimate_minutes(systems: list[str], workloads: list[str], sizes: suite.Sizes, quick: bool) -> float:
    seconds = 0.0
    for name in systems:
        for cell in suite.cells(SYSTEMS[name], workloads, sizes):
            kind = "sweep" if cell.fill_only else cell.workload
            seconds += CELL_SECONDS[kind][1 if quick else 0]
    return seconds * sizes.reps / 60


def run_profiles(systems: list[str], sizes: suite.Sizes, out: Path) -> list[Path]:
    py_spy = setup_peers.bin_of("tools", "py-spy")
    if not py_spy.exists():
        print("no py-spy: run python -m benchmarks.setup_peers tools")
        return []
    profiles = []
    for name in systems:
        if not SYSTEMS[name].is_asynctask:
            continue
        target = out / f"profile-{name}-w1.speedscope.json"
        print(f"profiling {name} W1 -> {target}", flush=True)
        # More jobs than W1 so the steady state lasts long enough to sample.
        profile_sizes = replace(sizes, w1_jobs=max(sizes.w1_jobs, 30_000))
        cell = suite.Cell("w1", sizes.concurrency)
        extra = ["--profile", str(target), "--py-spy", str(py_spy)]
        result = suite.run_one(SYSTEMS[name], cell, profile_sizes, extra=extra)
        if target.exists():
            profiles.append(target)
        else:
            print(f"  no profile written: {result.get('error') or result.get('stderr_tail', '')[-300:]}")
    return profiles


def settings_table(systems: list[str]) -> dict[str, dict[str, str]]:
    """Each system's settings as formulas of C, with their source (from benchmarks.tuning)."""
    out = {}
    for name in systems:
        tuning = TUNING[SYSTEMS[name].tuning_key]
        out[name] = {"summary": tuning.summary, "source": tuning.source}
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.report_only:
        print(write_reports(args.out or RESULTS, chart=not args.no_chart))
        return 0
    sizes = suite.QUICK if args.quick else suite.FULL
    sizes = replace(sizes, sweep=args.sweep, reps=args.reps or sizes.reps)
    if args.out is None:
        # A smoke run must not overwrite the committed full results.
        args.out = RESULTS / "quick" if args.quick else RESULTS
    args.out.mkdir(parents=True, exist_ok=True)
    needs_tools = args.profile or not args.no_chart
    systems = ensure_venvs(args.systems, install=not args.no_setup)
    if needs_tools and not setup_peers.is_ready("tools") and not args.no_setup:
        setup_peers.install("tools")
    # A nats-server of our own when a NATS system is selected and BENCH_NATS_URL is unset.
    with nats_for(systems, {name: SYSTEMS[name].broker for name in systems}):
        return run_suite(args, argv, sizes, systems)


def run_suite(
    args: argparse.Namespace, argv: list[str] | None, sizes: suite.Sizes, systems: list[str]
) -> int:
    """Every cell of every selected system, ``sizes.reps`` times; writes the results."""
    started_at = datetime.now(UTC)
    started = time.monotonic()
    loadavg = environment.loadavg()
    checked_out = environment.checkout()  # what this run measures, before anyone commits more
    expected = estimate_minutes(systems, args.workloads, sizes, args.quick)
    print(
        f"{len(systems)} systems x {args.workloads} (sweep C = {sizes.sweep}) x {sizes.reps} rep(s); "
        f"load average {loadavg}; about {expected:.0f} min on a quiet 2-core machine",
        flush=True,
    )
    runs: list[dict[str, Any]] = []
    for rep in range(sizes.reps):
        # Rotate the order each repetition so drift on the machine hits every system alike.
        order = systems[rep % len(systems) :] + systems[: rep % len(systems)]
        for name in order:
            for cell in suite.cells(SYSTEMS[name], args.workloads, sizes):
                result = suite.run_one(SYSTEMS[name], cell, sizes)
                result["rep"] = rep
                runs.append(result)
                clock = f"[{time.monotonic() - started:6.0f}s]"
                print(f"{clock} rep {rep + 1} {name:20} {cell.key:7}: {brief(result)}", flush=True)
    profiles = run_profiles(systems, sizes, args.out) if args.profile else []
    summary = suite.summarise(runs)

    command = "python -m benchmarks " + shlex.join(argv if argv is not None else sys.argv[1:])
    meta = {
        "date": started_at.strftime("%Y-%m-%d %H:%M UTC"),
        "machine": environment.machine(),
        "servers": environment.servers(),
        "loadavg": loadavg,
        "loadavg_end": environment.loadavg(),
        "cpus": os.cpu_count(),
        "command": command.strip(),
        "versions": environment.versions(systems, checked_out),
        "sizes": asdict(sizes),
        "duration_s": time.monotonic() - started,
        "enqueue_budget": 5.0,
    }
    data = {
        "meta": meta,
        "systems": [{"name": n, "broker": SYSTEMS[n].broker} for n in systems],
        "settings": settings_table(systems),
        "summary": summary,
        "runs": runs,
    }
    (args.out / "results.json").write_text(json.dumps(data, indent=1) + "\n")
    print(write_reports(args.out, profiles, chart=not args.no_chart))
    print(f"\nwrote {args.out}/results.json, results.md, chart.png in {time.monotonic() - started:.0f} s")
    return 0 if all(r.get("ok") for r in runs) else 1


def write_reports(out: Path, profiles: list[Path] | None = None, *, chart: bool = True) -> str:
    """``results.md`` and ``chart.png`` from ``out/results.json``; returns the Markdown."""
    data = json.loads((out / "results.json").read_text())
    if profiles is None:
        profiles = sorted(out.glob("profile-*.speedscope.json"))
    markdown = report.render(data, profiles)
    (out / "results.md").write_text(markdown)
    if chart:
        tools_python = setup_peers.python_of("tools")
        python = str(tools_python) if tools_python.exists() else sys.executable
        command = [python, str(services.ROOT / "chart.py"), str(out / "results.json"), str(out / "chart.png")]
        if subprocess.run(command, check=False).returncode:
            print("chart failed (is matplotlib installed? python -m benchmarks.setup_peers tools)")
    return markdown


def brief(result: dict[str, Any]) -> str:
    if not result.get("ok"):
        return f"FAILED {result.get('error', '')[:200]}"
    keys = {
        "w1": ("jobs_per_s", "enqueue_per_s", "bulk_per_s", "rss_peak_mib"),
        "w2": ("p50_ms", "p99_ms"),
        "w3": ("wall_s",),
        "w4": ("wall_s", "children_per_s"),
        "w5": ("recovery_s", "bound_s"),
    }
    shown = [f"{k}={result[k]:,.1f}" for k in keys[result["workload"]] if result.get(k) is not None]
    shown.append(f"lost={result.get('lost')} dup={result.get('duplicates')}")
    if result.get("capped"):
        shown.append(f"(drain budget: {result.get('unfinished')} unfinished)")
    return " ".join(shown)


if __name__ == "__main__":
    sys.exit(main())
