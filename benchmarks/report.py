"""``results.md`` from ``results.json``: where and how it was measured, the tables, the verdicts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks import tables
from benchmarks.hotspots import hot_spots
from benchmarks.verdicts import targets_table

__all__ = ["render"]

#: What results written before a field existed (issue #7's) mean by its absence.
_OLD_SIZES = {"sweep": [], "w4_jobs": 0, "w5_jobs": 0, "lease": 0.0, "maintenance": 0.0, "drain_budget": 0.0}


def _header(meta: dict[str, Any], sizes: dict[str, Any]) -> list[str]:
    busy = float(meta["loadavg"].split(",")[0]) > 1.0
    return [
        "# asynctask benchmarks (issue #18)",
        "",
        f"- Run: {meta['date']}, `{meta['command']}`, {sizes['reps']} repetition(s), systems alternating, "
        f"medians; {meta['duration_s'] / 60:.1f} min in all.",
        f"- Machine: {meta['machine']}.",
        f"- Servers: {meta['servers']}.",
        f"- Load average (1, 5, 15 min) at the start: {meta['loadavg']}; "
        f"at the end: {meta.get('loadavg_end', '?')}.",
        *(
            [
                "",
                "> **The machine was busy when this run started** (1-minute load average above 1 on "
                f"{meta.get('cpus', '?')} cores): absolute numbers are noisy; ratios from the same run "
                "hold better.",
            ]
            if busy
            else []
        ),
        "",
        "Each system runs its worker(s) with its own CLI at the settings its documentation gives for "
        "throughput (below), C jobs in flight in total (a CLI that forks one process per core splits C "
        "between them); broker, workers and load driver share the machine. Every handler run is "
        "counted outside the queue (an append-only file per run).",
    ]


def _method(meta: dict[str, Any], sizes: dict[str, Any]) -> list[str]:
    cs = ", ".join(str(c) for c in tables.concurrencies(sizes))
    return [
        f"- **W1**: {sizes['w1_jobs']:,} no-op jobs enqueued first, then the worker started; "
        "jobs/s = handler runs / (last start - first start), start-up excluded alike for everyone. "
        f"Swept over C = {cs}; at "
        f"C = {sizes['concurrency']} the publish rates are measured too (one by one, each awaited, for at "
        f"most {meta['enqueue_budget']:g} s when a bulk API exists; bulk on a fresh namespace: asynctask "
        "`publish_many`, streaQ `enqueue_many`, PgQueuer `enqueue` with lists, procrastinate "
        "`batch_defer_async`); at the other C the queue is filled untimed. A worker still draining "
        f"{sizes['drain_budget']:g} s after its start is stopped and measured over that time (its jobs left "
        "count as unfinished, not lost). Peak RSS: the largest worker process's `VmHWM`.",
        f"- **W2**: an idle, warmed-up worker at C = {sizes['concurrency']}; "
        f"{sizes['w2_jobs']} jobs published 10 ms apart; "
        "handler start (`time.time()`) - time before the publish call.",
        f"- **W3**: {sizes['w3_jobs']:,} jobs of `await asyncio.sleep(0.05)` enqueued first; "
        "wall = last handler end - first handler start (ideal: jobs / C x 0.05 s).",
        f"- **W4** (asynctask only): one parent spawns {sizes['w4_jobs']:,} no-op subtasks, then its "
        "`on_finish` runs; wall = the parent's publish to the end of `on_finish`, on a warmed-up worker.",
        f"- **W5** (asynctask only): a worker holding {sizes['w5_jobs']} running jobs is SIGKILLed; "
        f"recovery = the kill to the last job finished by a second, idle worker. `--lease {sizes['lease']:g} "
        f"--maintenance-interval {sizes['maintenance']:g}` on both.",
    ]


def _section(title: str, table: list[str]) -> list[str]:
    """A titled table, or nothing when it has no rows (a run that did not select them)."""
    return [f"## {title}", "", *table, ""] if len(table) > 2 else []


def render(data: dict[str, Any], profiles: list[Path]) -> str:
    meta, summary = data["meta"], data["summary"]
    sizes = {**_OLD_SIZES, **meta["sizes"]}
    systems = [s["name"] for s in data["systems"]]
    smoke = sizes["w1_jobs"] < 10_000
    out = [
        *_header(meta, sizes),
        "",
        *tables.main_table(summary, systems, sizes),
        "",
        *_method(meta, sizes),
        "",
        "## Settings",
        "",
        *tables.settings_lines(data, systems),
        "",
        *_section(
            "W1 throughput by concurrency (no-op jobs/s, medians)",
            tables.sweep_table(summary, systems, sizes),
        ),
        *_section("asynctask / peer, same broker", tables.ratio_table(summary, systems, sizes)),
        *_section("W2 latency, split", tables.latency_table(summary, systems)),
        *_section(
            "Observability overhead (issue #14: each within 10% of off; W1 at the same C)",
            tables.overhead_table(summary, systems),
        ),
        *_section(
            "W4 fan-out and W5 recovery (asynctask only: no peer has subtasks with `on_finish` or leases)",
            tables.ours_table(summary, systems, sizes),
        ),
        "## Targets (issue #18)",
        "",
        *(
            ["Smaller workloads than the issue's (a smoke run): the verdicts are indicative only.", ""]
            if smoke
            else []
        ),
        *targets_table(summary, systems, sizes),
        "",
        "Where a target is missed, the reason comes from the profiles (`--profile`, below when present).",
        "",
        "## Versions",
        "",
        meta["versions"],
        "",
    ]
    failures = [
        f"- {name} {key}: {', '.join(sorted(set(cell['errors'])))}"
        for name, cells in summary.items()
        for key, cell in cells.items()
        if cell.get("errors")
    ]
    if failures:
        out += ["## Failed runs", "", *failures, ""]
    for profile in profiles:
        out += [
            f"## Where the time goes: {profile.name}",
            "",
            "py-spy (250 Hz, `--nonblocking`) attached to the worker during W1 at C = "
            f"{sizes['concurrency']} (a separate run, not counted above). Open the file in "
            "https://www.speedscope.app.",
            "",
            *hot_spots(profile),
            "",
        ]
    return "\n".join(out)
