"""The top of a py-spy speedscope profile, for ``results.md``'s "Where the time goes"."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

__all__ = ["hot_spots"]


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
    for marker in ("site-packages/", "lib/python3.11/"):
        if marker in path:
            return path.split(marker, 1)[1]
    if "/asynctask/" in path:
        return "asynctask/" + path.split("/asynctask/", 1)[1]
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
        if "/asynctask/" in frames[i].get("file", "") and "/asynctask/cli/" not in frames[i].get("file", "")
    ]
    lines += [f"1. {pct(n)} {label(i)}" for i, n in ours[:top]]
    return lines
