"""Counting handler runs outside the queue under test: the per-run record file, read as it grows.

Every handler appends ``index start [end]`` (see :mod:`benchmarks.apps.record`); ``lost`` = jobs
never run, ``duplicates`` = extra runs. Negative indices mark control jobs (warm-ups, W4's parent
and ``on_finish``) and are not counted as work. Standard library only.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

__all__ = ["Records", "percentile"]


class _Alive(Protocol):
    def alive(self) -> bool: ...


class Records:
    """Reads the per-run record file as it grows."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self._partial = b""
        #: index -> list of (start, end) per run of that index.
        self.runs: dict[int, list[tuple[float, float | None]]] = {}
        self.total = 0
        self._seen: set[int] = set()
        self._finished: set[int] = set()
        #: Why the last :meth:`wait` ended: ``done``, ``timeout``, ``stall`` or ``dead``.
        self.stopped = ""

    def poll(self) -> None:
        try:
            with self.path.open("rb") as f:
                f.seek(self._offset)
                data = f.read()
        except FileNotFoundError:
            return
        self._offset += len(data)
        data = self._partial + data
        *lines, self._partial = data.split(b"\n")
        for line in lines:
            parts = line.split()
            index = int(parts[0])
            end = float(parts[2]) if len(parts) > 2 else None
            self.runs.setdefault(index, []).append((float(parts[1]), end))
            if index >= 0:
                self.total += 1
                self._seen.add(index)
                if end is not None:
                    self._finished.add(index)

    def seen(self, indices: range) -> int:
        """How many of ``indices`` have run at least once (cheap: the driver shares 2 cores)."""
        if len(indices) == 1:
            return int(indices[0] in self.runs)
        return len(self._seen)

    def finished(self) -> int:
        """How many work indices have a run that recorded its end."""
        return len(self._finished)

    async def wait_for(self, indices: range, worker: _Alive, *, timeout: float, stall: float) -> bool:
        """Wait until every index has run; give up on timeout, stall or a dead worker."""
        return await self.wait(
            lambda: self.seen(indices) >= len(indices), worker, timeout=timeout, stall=stall
        )

    async def wait(self, done: Callable[[], bool], worker: _Alive, *, timeout: float, stall: float) -> bool:
        """Wait until ``done()``; give up on timeout, on ``stall`` seconds without a new record, or
        when ``worker`` has died."""
        deadline = time.monotonic() + timeout
        last_progress, last_total = time.monotonic(), -1
        while True:
            self.poll()
            if done():
                self.stopped = "done"
                return True
            now = time.monotonic()
            if self.total != last_total:
                last_progress, last_total = now, self.total
            if not worker.alive():
                self.stopped = "dead"
            elif now - last_progress > stall:
                self.stopped = "stall"
            elif now > deadline:
                self.stopped = "timeout"
            else:
                await asyncio.sleep(0.005)
                continue
            return False

    def tally(self, indices: range, *, complete: bool = True) -> dict[str, int]:
        """Lost and duplicated runs; jobs not run when the wait was cut short are ``unfinished``."""
        missing = sum(1 for i in indices if i not in self.runs)
        duplicates = sum(len(self.runs[i]) - 1 for i in indices if i in self.runs)
        return {
            "lost": missing if complete else 0,
            "unfinished": 0 if complete else missing,
            "duplicates": duplicates,
            "runs": self.total,
        }


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) with linear interpolation."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    pos = (len(ordered) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)
