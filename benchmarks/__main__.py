"""``python -m benchmarks``: asynctask and its peers, same workloads, one run, one table.

    python -m benchmarks                          # the full suite (~14 min on a 2-core box)
    python -m benchmarks --quick                  # a ~2.5-minute smoke run
    python -m benchmarks --systems asynctask-redis,arq,saq --workloads w1
    python -m benchmarks --profile                # + a py-spy profile of the asynctask worker in W1

Peers are installed on first use into ``benchmarks/.venvs/`` (``python -m benchmarks.setup_peers``).
Results go to ``benchmarks/results/``: ``results.json`` (raw runs), ``results.md``, ``chart.png``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from dataclasses import asdict, replace
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from benchmarks import harness, report, setup_peers, suite
from benchmarks.nats_server import nats_for
from benchmarks.systems import SYSTEMS

RESULTS = harness.ROOT / "results"


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f"{mem_kb / 1024 / 1024:.0f} GiB"
    except (OSError, ValueError, IndexError):
        mem = "? GiB"
    system = f"{platform.system()} {platform.release()}"
    return f"{os.cpu_count()} cores ({cpu}), {mem}, {system}, Python {platform.python_version()}"


def servers() -> str:
    import asyncio

    parts = []
    try:
        info = asyncio.run(harness.redis_call("INFO", "server")).decode()
        version = next(line.split(":")[1] for line in info.splitlines() if line.startswith("redis_version"))
        parts.append(f"Redis {version.strip()}")
    except Exception as exc:
        parts.append(f"Redis ? ({exc})")
    try:
        out = subprocess.run(
            ["psql", harness.POSTGRES_ADMIN_URL, "-tAc", "show server_version"],
            capture_output=True,
            text=True,
            check=True,
        )
        parts.append(f"PostgreSQL {out.stdout.strip().split()[0]}")
    except Exception as exc:
        parts.append(f"PostgreSQL ? ({exc})")
    nats_url = os.environ.get("BENCH_NATS_URL")
    if nats_url:
        try:
            import nats

            async def version() -> str:
                nc = await nats.connect(nats_url)
                try:
                    return str(nc._server_info.get("version", "?"))
                finally:
                    await nc.close()

            parts.append(f"nats-server {asyncio.run(version())}")
        except Exception as exc:
            parts.append(f"nats-server ? ({exc})")
    return ", ".join(parts)


def versions(selected: list[str]) -> str:
    try:
        ours = metadata.version("asynctask")
    except metadata.PackageNotFoundError:
        ours = "?"
    parts = [f"asynctask {ours} (this checkout)"]
    for name in selected:
        venv = SYSTEMS[name].venv
        if venv:
            parts.append(" ".join(setup_peers.PEERS[venv]))
    return "; ".join(dict.fromkeys(parts))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 repetition, smaller workloads (~2.5 min)")
    parser.add_argument(
        "--systems", default=",".join(SYSTEMS), help=f"comma-separated subset of: {', '.join(SYSTEMS)}"
    )
    parser.add_argument("--workloads", default="w1,w2,w3", help="comma-separated subset of w1,w2,w3")
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
    args.workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
    if set(args.workloads) - {"w1", "w2", "w3"}:
        parser.error("workloads are w1, w2, w3")
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
        result = suite.run_one(
            SYSTEMS[name], "w1", profile_sizes, extra=["--profile", str(target), "--py-spy", str(py_spy)]
        )
        if target.exists():
            profiles.append(target)
        else:
            print(f"  no profile written: {result.get('error') or result.get('stderr_tail', '')[-300:]}")
    return profiles


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.report_only:
        print(write_reports(args.out or RESULTS, chart=not args.no_chart))
        return 0
    sizes = suite.QUICK if args.quick else suite.FULL
    if args.reps:
        sizes = replace(sizes, reps=args.reps)
    if args.out is None:
        # A smoke run must not overwrite the committed full results.
        args.out = RESULTS / "quick" if args.quick else RESULTS
    args.out.mkdir(parents=True, exist_ok=True)
    needs_tools = args.profile or not args.no_chart
    systems = ensure_venvs(args.systems, install=not args.no_setup)
    if needs_tools and not setup_peers.is_ready("tools") and not args.no_setup:
        setup_peers.install("tools")

    with nats_for(systems, {n: SYSTEMS[n].broker for n in systems}):
        return _run(args, argv, sizes, systems)


def _run(args: argparse.Namespace, argv: list[str] | None, sizes: suite.Sizes, systems: list[str]) -> int:
    started_at = datetime.now(UTC)
    started = time.monotonic()
    loadavg = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(
        f"{len(systems)} systems x {args.workloads} x {sizes.reps} rep(s); load average {loadavg}", flush=True
    )
    runs: list[dict[str, Any]] = []
    for rep in range(sizes.reps):
        # Rotate the order each repetition so drift on the machine hits every system alike.
        order = systems[rep % len(systems) :] + systems[: rep % len(systems)]
        for name in order:
            for workload in args.workloads:
                result = suite.run_one(SYSTEMS[name], workload, sizes)
                result["rep"] = rep
                runs.append(result)
                print(
                    f"[{time.monotonic() - started:6.0f}s] rep {rep + 1} {name:20} {workload}: "
                    + brief(result),
                    flush=True,
                )
    profiles = run_profiles(systems, sizes, args.out) if args.profile else []
    summary = suite.summarise(runs)

    command = "python -m benchmarks " + shlex.join(argv if argv is not None else sys.argv[1:])
    meta = {
        "date": started_at.strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "servers": servers(),
        "loadavg": loadavg,
        "cpus": os.cpu_count(),
        "command": command.strip(),
        "versions": versions(systems),
        "sizes": asdict(sizes),
        "duration_s": time.monotonic() - started,
        "enqueue_budget": 5.0,
    }
    data = {
        "meta": meta,
        "systems": [{"name": n, "broker": SYSTEMS[n].broker} for n in systems],
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
    meta = data["meta"]
    sizes = suite.Sizes(**meta["sizes"])
    systems = [s["name"] for s in data["systems"]]
    if profiles is None:
        profiles = sorted(out.glob("profile-*.speedscope.json"))
    markdown = report.render(meta, data["summary"], systems, sizes, profiles)
    (out / "results.md").write_text(markdown)
    if chart:
        tools_python = setup_peers.python_of("tools")
        python = str(tools_python) if tools_python.exists() else sys.executable
        command = [python, str(harness.ROOT / "chart.py"), str(out / "results.json"), str(out / "chart.png")]
        if subprocess.run(command, check=False).returncode:
            print("chart failed (is matplotlib installed? python -m benchmarks.setup_peers tools)")
    return markdown


def brief(result: dict[str, Any]) -> str:
    if not result.get("ok"):
        return f"FAILED {result.get('error', '')[:200]}"
    keys = {
        "w1": ("jobs_per_s", "enqueue_per_s", "bulk_per_s"),
        "w2": ("p50_ms", "p99_ms"),
        "w3": ("wall_s",),
    }
    shown = [f"{k}={result[k]:,.1f}" for k in keys[result["workload"]] if result.get(k) is not None]
    shown.append(f"lost={result.get('lost')} dup={result.get('duplicates')}")
    return " ".join(shown)


if __name__ == "__main__":
    sys.exit(main())
