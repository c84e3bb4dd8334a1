"""Turning the summary into ``results.md``: the table, ratios per pair, targets and hot spots."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from benchmarks.systems import SYSTEMS

Summary = dict[str, dict[str, dict[str, Any]]]


def _num(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "—"
    return f"{value:,.{digits}f}"


def _cell(summary: Summary, system: str, workload: str) -> dict[str, Any]:
    return summary.get(system, {}).get(workload, {})


def _ms(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.1f}" if value < 10 else f"{value:.0f}"


def main_table(summary: Summary, systems: list[str], sizes: Any) -> list[str]:
    w1n, w2n, w3n = sizes.w1_jobs, sizes.w2_jobs, sizes.w3_jobs
    lines = [
        f"| system (broker) | no-op jobs/s processed (W1, {w1n:,}) | one-by-one enqueue /s | bulk enqueue /s "
        f"| publish→start p50 / p99 ms (W2, {w2n}) | {w3n:,} x sleep 0.05 s at c={sizes.concurrency} (W3) "
        "| lost / run twice | notes |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for name in systems:
        system = SYSTEMS[name]
        w1, w2, w3 = (_cell(summary, name, w) for w in ("w1", "w2", "w3"))
        lost = sum(_cell(summary, name, w).get("lost", 0) for w in ("w1", "w2", "w3"))
        dup = sum(_cell(summary, name, w).get("duplicates", 0) for w in ("w1", "w2", "w3"))
        failed = sum(_cell(summary, name, w).get("failed", 0) for w in ("w1", "w2", "w3"))
        notes = [system.notes] if system.notes else []
        unfinished = sum(_cell(summary, name, w).get("unfinished", 0) for w in ("w1", "w2", "w3"))
        if failed:
            notes.append(
                f"{failed} failed run(s)" + (f", {unfinished} jobs unfinished" if unfinished else "")
            )
        label = f"**{name}**" if system.is_asynctask else name
        latency = (
            f"{_ms(w2.get('p50_ms'))} / {_ms(w2.get('p99_ms'))}" if w2.get("p50_ms") is not None else "—"
        )
        wall = f"{w3['wall_s']:.2f} s" if w3.get("wall_s") is not None else "—"
        lines.append(
            f"| {label} ({system.broker}) | {_num(w1.get('jobs_per_s'))} | {_num(w1.get('enqueue_per_s'))} "
            f"| {_num(w1.get('bulk_per_s'))} | {latency} | {wall} | {lost} / {dup} | {'; '.join(notes)} |"
        )
    return lines


def latency_table(summary: Summary, systems: list[str]) -> list[str]:
    lines = [
        "| system | publish call p50 ms | publish returned → handler start p50 ms "
        "| end to end p50 / mean / max ms |",
        "|---|---:|---:|---:|",
    ]
    for name in systems:
        w2 = _cell(summary, name, "w2")
        if w2.get("p50_ms") is None:
            continue
        lines.append(
            f"| {name} | {_ms(w2.get('publish_call_p50_ms'))} | {_ms(w2.get('after_publish_p50_ms'))} "
            f"| {_ms(w2.get('p50_ms'))} / {_ms(w2.get('mean_ms'))} / {_ms(w2.get('max_ms'))} |"
        )
    return lines


def _ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None or b == 0:
        return "—"
    return f"{a / b:.2f}x"


def ratio_table(summary: Summary, systems: list[str]) -> list[str]:
    lines = [
        "| asynctask / peer | jobs/s (↑) | one-by-one enqueue (↑) | bulk enqueue (↑) | p50 latency (↓) "
        "| p99 latency (↓) | W3 wall (↓) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for ours in systems:
        if not SYSTEMS[ours].is_asynctask or SYSTEMS[ours].variant:
            continue
        for peer in systems:
            if SYSTEMS[peer].is_asynctask or SYSTEMS[peer].broker != SYSTEMS[ours].broker:
                continue
            a = {w: _cell(summary, ours, w) for w in ("w1", "w2", "w3")}
            p = {w: _cell(summary, peer, w) for w in ("w1", "w2", "w3")}
            lines.append(
                f"| {ours} / {peer} "
                f"| {_ratio(a['w1'].get('jobs_per_s'), p['w1'].get('jobs_per_s'))} "
                f"| {_ratio(a['w1'].get('enqueue_per_s'), p['w1'].get('enqueue_per_s'))} "
                f"| {_ratio(a['w1'].get('bulk_per_s'), p['w1'].get('bulk_per_s'))} "
                f"| {_ratio(a['w2'].get('p50_ms'), p['w2'].get('p50_ms'))} "
                f"| {_ratio(a['w2'].get('p99_ms'), p['w2'].get('p99_ms'))} "
                f"| {_ratio(a['w3'].get('wall_s'), p['w3'].get('wall_s'))} |"
            )
    return lines


def overhead_table(summary: Summary, systems: list[str]) -> list[str]:
    """The observability variants next to the plain worker on the same broker (W1)."""
    rows = []
    for name in systems:
        variant = SYSTEMS[name]
        if not variant.variant:
            continue
        base = f"asynctask-{variant.broker}"
        ours, plain = _cell(summary, name, "w1"), _cell(summary, base, "w1")
        rate, cpu = ours.get("jobs_per_s"), ours.get("worker_cpu_us_per_job")
        rows.append(
            f"| {name} | {variant.notes} | {'—' if rate is None else f'{rate:,.0f}'} "
            f"| {_ratio(rate, plain.get('jobs_per_s'))} "
            f"| {'—' if cpu is None else f'{cpu:.1f}'} | {_ratio(cpu, plain.get('worker_cpu_us_per_job'))} |"
        )
    if not rows:
        return []
    return [
        "## Observability overhead (issue #14: each within 10% of off)",
        "",
        "Against the plain worker on the same broker: W1 jobs/s, and the worker's CPU time per job "
        "while it drains (steadier on a busy machine).",
        "",
        "| system | what is on | W1 jobs/s | vs. off | worker CPU µs/job | vs. off |",
        "|---|---|---:|---:|---:|---:|",
        *rows,
        "",
    ]


def _best(summary: Summary, broker: str, metric: str = "jobs_per_s") -> tuple[str | None, float | None]:
    best: tuple[str | None, float | None] = (None, None)
    for name, system in SYSTEMS.items():
        if system.is_asynctask or system.broker != broker:
            continue
        value = _cell(summary, name, "w1").get(metric)
        if value is not None and (best[1] is None or value > best[1]):
            best = (name, value)
    return best


def _check(label: str, measured: float | None, target: float, *, higher: bool, unit: str) -> str:
    if measured is None:
        return f"| {label} | not measured | — |"
    ok = measured >= target if higher else measured <= target
    if ok:
        verdict = "met"
    elif higher:
        verdict = f"**missed**: {measured / target:.0%} of target, needs {target / measured:.1f}x more"
    else:
        verdict = f"**missed** by {measured - target:,.2f} {unit} ({measured / target:.1f}x the limit)"
    shown = f"{measured:,.2f}" if measured < 100 else f"{measured:,.0f}"
    return f"| {label} | {shown} {unit} | {verdict} |"


def targets_table(summary: Summary, sizes: Any) -> list[str]:
    lines = ["| target (issue #7) | measured (median) | verdict |", "|---|---:|---|"]
    # The 1.1 s is for 2,000 jobs at c=100 (ideal 1.0 s): scale it for other sizes.
    w3_ideal = sizes.w3_jobs / sizes.concurrency * 0.05
    w3_target = 1.1 * w3_ideal
    w3_label = "W3 wall ≤ 1.1 s" if sizes.w3_jobs == 2000 else f"W3 wall ≤ {w3_target:.3g} s (1.1 x ideal)"
    per_broker = {
        "redis": ("asynctask-redis", 10_000.0, 4.0),
        "postgres": ("asynctask-postgres", 12_000.0, 2.0),
    }
    for broker, (ours, floor, factor) in per_broker.items():
        if ours not in summary:
            continue
        w1, w2, w3 = (_cell(summary, ours, w) for w in ("w1", "w2", "w3"))
        lines.append(
            _check(
                f"{ours}: ≥ {floor:,.0f} no-op jobs/s",
                w1.get("jobs_per_s"),
                floor,
                higher=True,
                unit="jobs/s",
            )
        )
        if broker == "redis":
            peer, peer_rate = _best(summary, "redis")
        else:
            peer, peer_rate = "pgqueuer", _cell(summary, "pgqueuer", "w1").get("jobs_per_s")
        if peer and peer_rate and w1.get("jobs_per_s") is not None:
            lines.append(
                _check(
                    f"{ours}: ≥ {factor:g}x {peer} ({peer_rate:,.0f} jobs/s)",
                    w1["jobs_per_s"] / peer_rate,
                    factor,
                    higher=True,
                    unit="x",
                )
            )
        lines.append(
            _check(
                f"{ours}: bulk publish_many ≥ 50,000/s",
                w1.get("bulk_per_s"),
                50_000,
                higher=True,
                unit="jobs/s",
            )
        )
        lines.append(
            _check(f"{ours}: publish→start p50 ≤ 1 ms", w2.get("p50_ms"), 1.0, higher=False, unit="ms")
        )
        lines.append(
            _check(f"{ours}: publish→start p99 ≤ 5 ms", w2.get("p99_ms"), 5.0, higher=False, unit="ms")
        )
        w3_line = _check(f"{ours}: {w3_label}", w3.get("wall_s"), w3_target, higher=False, unit="s")
        if w3.get("avg_running") is not None and "missed" in w3_line:
            w3_line = w3_line.removesuffix(" |") + (
                f"; on average {w3['avg_running']:.0f} of {sizes.concurrency} slots busy, "
                f"sleeps ended {w3.get('sleep_overrun_ms') or 0:.1f} ms late |"
            )
        lines.append(w3_line)
        lost = sum(_cell(summary, ours, w).get("lost", 0) for w in ("w1", "w2", "w3"))
        dup = sum(_cell(summary, ours, w).get("duplicates", 0) for w in ("w1", "w2", "w3"))
        verdict = "met" if lost == dup == 0 else "**missed**"
        lines.append(f"| {ours}: no job lost or run twice | {lost} lost, {dup} twice | {verdict} |")
    return lines


def _group(path: str) -> str:
    """Which library a frame's file belongs to (asynctask by module)."""
    if "/asynctask/" in path:
        return "asynctask/" + path.split("/asynctask/", 1)[1]
    if "site-packages/" in path:
        return path.split("site-packages/", 1)[1].split("/", 1)[0]
    if "/benchmarks/" in path:
        return "benchmarks (handler + record file)"
    if "/lib/python3" in path:
        rest = path.split("/lib/python3", 1)[1].split("/", 1)[-1]
        return "stdlib " + rest.split("/", 1)[0].removesuffix(".py")
    return path or "?"


def _short(path: str) -> str:
    for marker in ("site-packages/", "/work/main/", "lib/python3.11/"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path


def hot_spots(profile: Path, top: int = 12) -> list[str]:
    """The top of a py-spy speedscope profile: by library, by own time, and asynctask by total time."""
    data = json.loads(profile.read_text())
    frames = data["shared"]["frames"]
    own: Counter[int] = Counter()
    total: Counter[int] = Counter()
    groups: Counter[str] = Counter()
    weight_sum = 0.0
    for prof in data["profiles"]:
        for stack, weight in zip(prof["samples"], prof["weights"], strict=False):
            weight_sum += weight
            if stack:
                own[stack[-1]] += weight
                groups[_group(frames[stack[-1]].get("file", ""))] += weight
            for index in set(stack):
                total[index] += weight
    if not weight_sum:
        return ["(no samples)"]

    def label(index: int) -> str:
        frame = frames[index]
        return f"`{frame['name']}` ({_short(frame.get('file', ''))}:{frame.get('line', '?')})"

    def pct(value: float) -> str:
        return f"{value / weight_sum:5.1%}"

    lines = [f"{weight_sum:.2f} s of samples. Own time by library / asynctask module:", ""]
    lines += [f"- {pct(n)} {name}" for name, n in groups.most_common(top)]
    lines += ["", "Hottest lines by own time:", ""]
    lines += [f"1. {pct(n)} {label(i)}" for i, n in own.most_common(top)]
    lines += ["", "asynctask functions by total time (including what they call):", ""]
    ours = [
        (i, n)
        for i, n in total.most_common()
        if "/asynctask/" in frames[i].get("file", "") and "/asynctask/cli.py" not in frames[i].get("file", "")
    ]
    lines += [f"1. {pct(n)} {label(i)}" for i, n in ours[:top]]
    return lines


def render(
    meta: dict[str, Any], summary: Summary, systems: list[str], sizes: Any, profiles: list[Path]
) -> str:
    out = [
        "# asynctask benchmarks (issue #7)",
        "",
        f"Run {meta['date']} on {meta['machine']}. Command: `{meta['command']}` "
        f"({sizes.reps} repetition(s), systems alternating; medians; {meta['duration_s']:.0f} s in all).",
        f"Load average when the run started: {meta['loadavg']}. Servers: {meta['servers']}.",
        *(
            [
                "",
                "> **The machine was busy when this run started** (1-minute load average above 1 on "
                f"{meta.get('cpus', '?')} cores): absolute numbers are noisy; ratios from the same run "
                "hold better.",
            ]
            if float(meta["loadavg"].split(",")[0]) > 1.0
            else []
        ),
        "",
        "One worker process per system, started with the library's own CLI, concurrency "
        f"{sizes.concurrency}; broker, worker and load driver share the machine. Every handler run is "
        "counted outside the queue (an append-only file per run).",
        "",
        *main_table(summary, systems, sizes),
        "",
        "- **W1**: enqueue the jobs (one by one, each awaited, for at most "
        f"{meta['enqueue_budget']:g} s when a bulk API exists; the rest in bulk), then start the worker; "
        "jobs/s = handler runs / (last start - first start), so start-up is excluded alike for everyone. "
        "Bulk is timed separately on a fresh namespace (asynctask `publish_many`, streaQ `enqueue_many`, "
        "pgqueuer `enqueue` with lists, procrastinate `batch_defer_async`).",
        "- **W2**: an idle, warmed-up worker; jobs published 10 ms apart; handler start (`time.time()`) - "
        "time before the publish call.",
        "- **W3**: the jobs are enqueued first; wall = last handler end - first handler start "
        "(ideal: jobs / concurrency x 0.05 s).",
        "",
        "## asynctask / peer, same broker",
        "",
        *ratio_table(summary, systems),
        "",
        *overhead_table(summary, systems),
        "## W2 latency, split",
        "",
        *latency_table(summary, systems),
        "",
        "## Targets",
        "",
        *(
            []
            if sizes.w1_jobs == 10_000
            else ["Smaller workloads than the issue's (a smoke run): the verdicts are indicative only.", ""]
        ),
        *targets_table(summary, sizes),
        "",
        "## Versions",
        "",
        meta["versions"],
        "",
    ]
    failures = [
        f"- {name} {workload}: {', '.join(sorted(set(cell['errors'])))}"
        for name, workloads in summary.items()
        for workload, cell in workloads.items()
        if cell.get("errors")
    ]
    if failures:
        out += ["## Failed runs", "", *failures, ""]
    for profile in profiles:
        out += [
            f"## Where the time goes: {profile.name}",
            "",
            "py-spy (250 Hz, `--nonblocking`) attached to the worker during W1 (a separate run, not "
            "counted above). Open the file in https://www.speedscope.app.",
            "",
            *hot_spots(profile),
            "",
        ]
    return "\n".join(out)
