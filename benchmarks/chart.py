"""The bar chart: ``python benchmarks/chart.py results.json chart.png`` (needs matplotlib).

Runs in the ``tools`` venv (``python -m benchmarks.setup_peers tools``) or any env with matplotlib.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

COLORS = {"redis": "#d62728", "postgres": "#1f77b4", "nats": "#2ca02c", "mongo": "#8c564b"}


def main(source: Path, target: Path) -> None:
    data = json.loads(source.read_text())
    summary = data["summary"]
    systems = [s for s in data["systems"] if s["name"] in summary]
    names = [s["name"] for s in systems]
    colors = [COLORS[s["broker"]] for s in systems]

    def metric(workload: str, key: str) -> list[float]:
        return [summary[n].get(workload, {}).get(key) or 0.0 for n in names]

    def best_w1(name: str) -> float:
        cells = summary[name]
        rates = [c.get("jobs_per_s") for k, c in cells.items() if k == "w1" or k.startswith("w1@")]
        return max((r for r in rates if r), default=0.0)

    sizes = data["meta"]["sizes"]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.8))
    panels = [
        (
            axes[0],
            [best_w1(n) for n in names],
            f"W1: no-op jobs/s, bar best C, tick C={sizes['concurrency']} (higher is better)",
            "{:,.0f}",
        ),
        (
            axes[1],
            metric("w2", "p50_ms"),
            "W2: publish→start ms, bar p50, tick p99 (lower is better)",
            "{:.1f}",
        ),
        (
            axes[2],
            metric("w3", "wall_s"),
            f"W3: {sizes['w3_jobs']:,} x sleep(0.05) at c={sizes['concurrency']}, wall s (lower is better)",
            "{:.2f}",
        ),
    ]
    for ax, values, title, fmt in panels:
        bars = ax.barh(names, values, color=colors)
        for bar, name in zip(bars, names, strict=True):
            if name.startswith("asynctask"):
                bar.set_edgecolor("black")
                bar.set_linewidth(2)
        ax.bar_label(bars, labels=[fmt.format(v) if v else "—" for v in values], padding=3, fontsize=8)
        ax.set_title(title, fontsize=9)
        ax.invert_yaxis()
        ax.margins(x=0.25)
        ax.tick_params(labelsize=9)
    at_base = metric("w1", "jobs_per_s")
    axes[0].scatter([v or float("nan") for v in at_base], names, marker="|", color="black", s=120, zorder=3)
    p99 = metric("w2", "p99_ms")
    axes[1].scatter([v or float("nan") for v in p99], names, marker="|", color="black", s=120, zorder=3)
    axes[1].set_xscale("log")
    fig.suptitle(f"asynctask vs peers: {data['meta']['date']}, {data['meta']['machine']}", fontsize=10)
    fig.tight_layout()
    fig.savefig(target, dpi=90)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
