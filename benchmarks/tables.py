"""The Markdown tables of ``results.md``, from a run's summary (system -> cell -> medians)."""

from __future__ import annotations

from typing import Any

from benchmarks.systems import SYSTEMS

Summary = dict[str, dict[str, dict[str, Any]]]

__all__ = [
    "best_c",
    "cell",
    "latency_table",
    "main_table",
    "ours_table",
    "ratio_table",
    "settings_lines",
    "sweep_table",
    "w1_at",
]


def num(value: float | None, digits: int = 0) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


def ms(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.1f}" if value < 10 else f"{value:.0f}"


def seconds(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f} s"


def ratio(a: float | None, b: float | None) -> str:
    return "—" if a is None or b is None or b == 0 else f"{a / b:.2f}x"


def cell(summary: Summary, system: str, key: str) -> dict[str, Any]:
    return summary.get(system, {}).get(key, {})


def w1_at(summary: Summary, system: str, c: int, base: int) -> dict[str, Any]:
    """W1 at concurrency ``c`` (``base`` is the C of the plain ``w1`` cell)."""
    return cell(summary, system, "w1" if c == base else f"w1@{c}")


def concurrencies(sizes: dict[str, Any]) -> list[int]:
    return sorted({sizes["concurrency"], *sizes["sweep"]})


def best_c(summary: Summary, system: str, sizes: dict[str, Any]) -> tuple[int | None, float | None]:
    """The concurrency with the highest median W1 jobs/s, and that rate."""
    best: tuple[int | None, float | None] = (None, None)
    for c in concurrencies(sizes):
        rate = w1_at(summary, system, c, sizes["concurrency"]).get("jobs_per_s")
        if rate is not None and (best[1] is None or rate > best[1]):
            best = (c, rate)
    return best


def _totals(summary: Summary, system: str) -> tuple[int, int, int, int, int]:
    cells = summary.get(system, {}).values()
    return (
        sum(c.get("lost", 0) for c in cells),
        sum(c.get("duplicates", 0) for c in cells),
        sum(c.get("failed", 0) for c in cells),
        sum(c.get("unfinished", 0) for c in cells),
        sum(c.get("capped", 0) for c in cells),
    )


def _label(name: str) -> str:
    system = SYSTEMS.get(name)
    broker = system.broker if system else "?"
    return f"**{name}** ({broker})" if system and system.is_asynctask else f"{name} ({broker})"


def main_table(summary: Summary, systems: list[str], sizes: dict[str, Any]) -> list[str]:
    c, w1n, w2n, w3n = sizes["concurrency"], sizes["w1_jobs"], sizes["w2_jobs"], sizes["w3_jobs"]
    lines = [
        f"| system (broker) | processes | W1 no-op jobs/s ({w1n:,}), best C | W1 at C = {c} "
        f"| one-by-one enqueue /s | bulk enqueue /s | W2 publish→start p50 / p99 ms ({w2n}) "
        f"| W3 {w3n:,} x sleep 0.05 s at C = {c} | worker peak RSS MiB (W1) | lost / run twice | notes |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for name in systems:
        w1, w2, w3 = (cell(summary, name, k) for k in ("w1", "w2", "w3"))
        best, rate = best_c(summary, name, sizes)
        lost, dup, failed, unfinished, capped = _totals(summary, name)
        system = SYSTEMS.get(name)
        notes = [system.notes] if system and system.notes else []
        if failed:
            notes.append(f"{failed} failed run(s)")
        if capped:
            notes.append(f"{capped} W1 run(s) measured over the {sizes['drain_budget']:g} s drain budget")
        if unfinished:
            notes.append(f"{unfinished:,} jobs unfinished")
        latency = f"{ms(w2.get('p50_ms'))} / {ms(w2.get('p99_ms'))}" if w2.get("p50_ms") is not None else "—"
        best_text = f"{num(rate)} (C = {best})" if best is not None else "—"
        lines.append(
            f"| {_label(name)} | {w1.get('processes', '—')} | {best_text} | {num(w1.get('jobs_per_s'))} "
            f"| {num(w1.get('enqueue_per_s'))} | {num(w1.get('bulk_per_s'))} | {latency} "
            f"| {seconds(w3.get('wall_s'))} | {num(w1.get('rss_peak_mib'))} | {lost} / {dup} "
            f"| {'; '.join(notes)} |"
        )
    return lines


def sweep_table(summary: Summary, systems: list[str], sizes: dict[str, Any]) -> list[str]:
    cs = concurrencies(sizes)
    base = sizes["concurrency"]
    top = max(cs)
    lines = [
        "| system | "
        + " | ".join(f"C = {c}" for c in cs)
        + f" | best C | best / C = {base} | C = {top} / best |",
        "|---|" + "---:|" * (len(cs) + 3),
    ]
    for name in systems:
        rates = [w1_at(summary, name, c, base).get("jobs_per_s") for c in cs]
        best, rate = best_c(summary, name, sizes)
        at_base = w1_at(summary, name, base, base).get("jobs_per_s")
        at_top = w1_at(summary, name, top, base).get("jobs_per_s")
        lines.append(
            f"| {name} | "
            + " | ".join(num(r) for r in rates)
            + f" | {best if best is not None else '—'} | {ratio(rate, at_base)} | {ratio(at_top, rate)} |"
        )
    return lines


def settings_lines(data: dict[str, Any], systems: list[str]) -> list[str]:
    """Each system's settings: as formulas of C (benchmarks.tuning), as run at C = 100, and why."""
    table = data.get("settings", {})
    base = data["meta"]["sizes"]["concurrency"]
    lines = [
        f"| system | settings (C = total concurrency) | as run at C = {base} | documented in |",
        "|---|---|---|---|",
    ]
    for name in systems:
        entry = table.get(name, {})
        # As run at C = 100: W1's, or any other cell's at that C when W1 was not selected.
        cells = data["summary"].get(name, {})
        ran: dict[str, Any] = next(
            (c["settings"] for c in cells.values() if c.get("concurrency") == base and c.get("settings")), {}
        )
        shown = ", ".join(f"{k}={v}" for k, v in ran.items()) or "—"
        lines.append(f"| {name} | {entry.get('summary', '—')} | {shown} | {entry.get('source', '—')} |")
    return lines


def latency_table(summary: Summary, systems: list[str]) -> list[str]:
    lines = [
        "| system | publish call p50 ms | publish returned → handler start p50 ms "
        "| end to end p50 / mean / max ms |",
        "|---|---:|---:|---:|",
    ]
    for name in systems:
        w2 = cell(summary, name, "w2")
        if w2.get("p50_ms") is None:
            continue
        lines.append(
            f"| {name} | {ms(w2.get('publish_call_p50_ms'))} | {ms(w2.get('after_publish_p50_ms'))} "
            f"| {ms(w2.get('p50_ms'))} / {ms(w2.get('mean_ms'))} / {ms(w2.get('max_ms'))} |"
        )
    return lines


def ratio_table(summary: Summary, systems: list[str], sizes: dict[str, Any]) -> list[str]:
    base = sizes["concurrency"]
    lines = [
        f"| asynctask / peer | W1 jobs/s, each at its best C (↑) | W1 at C = {base} (↑) "
        "| one-by-one enqueue (↑) | bulk enqueue (↑) | p50 latency (↓) | p99 latency (↓) | W3 wall (↓) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for ours in systems:
        if ours not in SYSTEMS or not SYSTEMS[ours].is_asynctask or SYSTEMS[ours].variant:
            continue
        for peer in systems:
            if (
                peer not in SYSTEMS
                or SYSTEMS[peer].is_asynctask
                or SYSTEMS[peer].broker != SYSTEMS[ours].broker
            ):
                continue
            a = {k: cell(summary, ours, k) for k in ("w1", "w2", "w3")}
            p = {k: cell(summary, peer, k) for k in ("w1", "w2", "w3")}
            lines.append(
                f"| {ours} / {peer} "
                f"| {ratio(best_c(summary, ours, sizes)[1], best_c(summary, peer, sizes)[1])} "
                f"| {ratio(a['w1'].get('jobs_per_s'), p['w1'].get('jobs_per_s'))} "
                f"| {ratio(a['w1'].get('enqueue_per_s'), p['w1'].get('enqueue_per_s'))} "
                f"| {ratio(a['w1'].get('bulk_per_s'), p['w1'].get('bulk_per_s'))} "
                f"| {ratio(a['w2'].get('p50_ms'), p['w2'].get('p50_ms'))} "
                f"| {ratio(a['w2'].get('p99_ms'), p['w2'].get('p99_ms'))} "
                f"| {ratio(a['w3'].get('wall_s'), p['w3'].get('wall_s'))} |"
            )
    return lines


def overhead_table(summary: Summary, systems: list[str]) -> list[str]:
    """The observability variants (issue #14) next to the plain worker on the same broker."""
    lines = [
        "| system | what is on | W1 jobs/s | vs. off | workers' CPU µs/job | vs. off |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for name in systems:
        system = SYSTEMS.get(name)
        if system is None or not system.variant:
            continue
        ours, plain = cell(summary, name, "w1"), cell(summary, f"asynctask-{system.broker}", "w1")
        rate, cpu = ours.get("jobs_per_s"), ours.get("worker_cpu_us_per_job")
        lines.append(
            f"| {name} | {system.notes} | {num(rate)} | {ratio(rate, plain.get('jobs_per_s'))} "
            f"| {num(cpu, 1)} | {ratio(cpu, plain.get('worker_cpu_us_per_job'))} |"
        )
    return lines


def ours_table(summary: Summary, systems: list[str], sizes: dict[str, Any]) -> list[str]:
    """W4 fan-out and W5 recovery, asynctask's own workloads."""
    lines = [
        f"| system | W4 wall ({sizes['w4_jobs']:,} subtasks) | parent's spawn loop | children enqueued "
        "| children run (jobs/s) | last child → on_finish (children loaded) | on_finish | "
        f"W5 recovery ({sizes['w5_jobs']} jobs) | first rescue | bound: lease + maintenance "
        "| lost / run twice |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name in systems:
        w4, w5 = cell(summary, name, "w4"), cell(summary, name, "w5")
        if not w4 and not w5:
            continue
        lost = w4.get("lost", 0) + w5.get("lost", 0)
        dup = w4.get("duplicates", 0) + w5.get("duplicates", 0)
        children = (
            f"{seconds(w4.get('children_s'))} ({num(w4.get('children_per_s'))})"
            if w4.get("children_s")
            else "—"
        )
        lines.append(
            f"| {name} | {seconds(w4.get('wall_s'))} | {seconds(w4.get('spawn_s'))} "
            f"| {seconds(w4.get('enqueue_children_s'))} | {children} | {seconds(w4.get('to_on_finish_s'))} "
            f"| {seconds(w4.get('on_finish_s'))} | {seconds(w5.get('recovery_s'))} "
            f"| {seconds(w5.get('first_rescue_s'))} | {seconds(w5.get('bound_s'))} | {lost} / {dup} |"
        )
    return lines
