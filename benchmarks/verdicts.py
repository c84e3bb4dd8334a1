"""Issue #18's targets, each with its measured value, the ratio to the target and a verdict.

| workload | Redis | Postgres |
|---|---|---|
| W1 no-op jobs/s, best C | ≥ 12,000 and ≥ 3x the best Redis peer | ≥ 1.5x PgQueuer's best |
| W1 at C = 200 vs best C | ≥ 0.9x | ≥ 0.9x |
| bulk publish jobs/s | ≥ 50,000 | ≥ 1.2x PgQueuer's bulk |
| W2 publish → start p50 / p99 | ≤ 1 ms / ≤ 5 ms | ≤ 2 ms / ≤ 5 ms |
| W3 2,000 x 50 ms at C = 100 | ≤ 1.1 s | ≤ 1.1 s |
| lost / run twice | 0 / 0 | 0 / 0 |

Peers are compared at their own best C. W5 has no numbered target; its expected bound (lease +
maintenance interval) is checked alongside.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from benchmarks.systems import SYSTEMS
from benchmarks.tables import Summary, best_c, cell, w1_at

__all__ = ["targets_table"]


@dataclass(frozen=True)
class Check:
    label: str
    measured: float | None
    target: float
    higher: bool
    unit: str
    note: str = ""

    def row(self) -> str:
        if self.measured is None:
            return f"| {self.label} | not measured | — | — |"
        shown = f"{self.measured:,.2f}" if abs(self.measured) < 100 else f"{self.measured:,.0f}"
        share = self.measured / self.target if self.target else float("nan")
        met = self.measured >= self.target if self.higher else self.measured <= self.target
        verdict = "met" if met else "**missed**"
        note = f"; {self.note}" if self.note else ""
        return f"| {self.label} | {shown} {self.unit} | {share:.2f} | {verdict}{note} |"


def _best_peer(summary: Summary, broker: str, sizes: dict[str, Any]) -> tuple[str | None, float | None]:
    best: tuple[str | None, float | None] = (None, None)
    for name in summary:
        system = SYSTEMS.get(name)
        if system is None or system.is_asynctask or system.broker != broker:
            continue
        rate = best_c(summary, name, sizes)[1]
        if rate is not None and (best[1] is None or rate > best[1]):
            best = (name, rate)
    return best


def _over(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b


def _w1_checks(summary: Summary, ours: str, broker: str, sizes: dict[str, Any]) -> list[Check]:
    c_best, rate = best_c(summary, ours, sizes)
    top = max([*sizes["sweep"], sizes["concurrency"]])
    at_top = w1_at(summary, ours, top, sizes["concurrency"]).get("jobs_per_s")
    at = f" (C = {c_best})" if c_best is not None else ""
    checks = []
    if broker == "redis":
        checks.append(Check(f"W1 no-op jobs/s at best C{at} ≥ 12,000", rate, 12_000, True, "jobs/s"))
        peer, peer_rate = _best_peer(summary, "redis", sizes)
        if peer:
            label = f"W1 best C ≥ 3x the best Redis peer ({peer}, {peer_rate:,.0f} jobs/s at its best C)"
            checks.append(Check(label, _over(rate, peer_rate), 3.0, True, "x"))
    else:
        peer_c, peer_rate = best_c(summary, "pgqueuer", sizes)
        label = f"W1 best C ≥ 1.5x PgQueuer's best ({_rate(peer_rate)} jobs/s at C = {peer_c})"
        checks.append(Check(label, _over(rate, peer_rate), 1.5, True, "x"))
    checks.append(Check(f"W1 at C = {top} ≥ 0.9x its best C", _over(at_top, rate), 0.9, True, "x"))
    return checks


def _rate(value: float | None) -> str:
    return "—" if value is None else f"{value:,.0f}"


def _checks(summary: Summary, ours: str, broker: str, sizes: dict[str, Any]) -> list[Check]:
    w1, w2, w3, w5 = (cell(summary, ours, k) for k in ("w1", "w2", "w3", "w5"))
    checks = _w1_checks(summary, ours, broker, sizes)
    if broker == "redis":
        checks.append(Check("bulk publish ≥ 50,000 jobs/s", w1.get("bulk_per_s"), 50_000, True, "jobs/s"))
        p50_limit = 1.0
    else:
        peer_bulk = cell(summary, "pgqueuer", "w1").get("bulk_per_s")
        label = f"bulk publish ≥ 1.2x PgQueuer's bulk ({_rate(peer_bulk)} jobs/s)"
        checks.append(Check(label, _over(w1.get("bulk_per_s"), peer_bulk), 1.2, True, "x"))
        p50_limit = 2.0
    checks.append(
        Check(f"W2 publish → start p50 ≤ {p50_limit:g} ms", w2.get("p50_ms"), p50_limit, False, "ms")
    )
    checks.append(Check("W2 publish → start p99 ≤ 5 ms", w2.get("p99_ms"), 5.0, False, "ms"))
    # The 1.1 s is for 2,000 jobs at C = 100 (ideal 1.0 s): scaled for other sizes.
    ideal = sizes["w3_jobs"] / sizes["concurrency"] * 0.05
    note = ""
    if w3.get("avg_running") is not None:
        note = (
            f"on average {w3['avg_running']:.0f} of {sizes['concurrency']} slots busy, "
            f"sleeps ended {w3.get('sleep_overrun_ms') or 0:.1f} ms late"
        )
    checks.append(
        Check(f"W3 wall ≤ {1.1 * ideal:.3g} s (1.1x ideal)", w3.get("wall_s"), 1.1 * ideal, False, "s", note)
    )
    if w5.get("bound_s") is not None:
        label = (
            f"W5 recovery ≤ lease + maintenance interval ({w5['bound_s']:g} s; expected, no numbered target)"
        )
        checks.append(Check(label, w5.get("recovery_s"), w5["bound_s"], False, "s"))
    return checks


def targets_table(summary: Summary, systems: list[str], sizes: dict[str, Any]) -> list[str]:
    lines = [
        "| target (issue #18) | measured (median) | measured / target | verdict |",
        "|---|---:|---:|---|",
    ]
    for ours in systems:
        system = SYSTEMS.get(ours)
        if (
            system is None
            or not system.is_asynctask
            or system.variant
            or system.broker not in ("redis", "postgres")
        ):
            continue
        for check in _checks(summary, ours, system.broker, sizes):
            lines.append(check.row().replace("| ", f"| {ours}: ", 1))
        cells = summary.get(ours, {}).values()
        lost = sum(c.get("lost", 0) for c in cells)
        dup = sum(c.get("duplicates", 0) for c in cells)
        verdict = "met" if lost == dup == 0 else "**missed**"
        lines.append(
            f"| {ours}: no job lost or run twice (every workload) | {lost} lost, {dup} twice "
            f"| — | {verdict} |"
        )
    return lines
