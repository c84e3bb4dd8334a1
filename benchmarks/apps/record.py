"""What every benchmark handler calls: one line per handler run, appended to a per-run file.

The file is named by ``$BENCH_RECORD`` (set by the driver when it starts the worker). Each line
is ``index start [end]`` written with one ``os.write`` on an ``O_APPEND`` descriptor: short
appends are atomic, so concurrent handlers (threads or coroutines) never interleave, and the
count is independent of the queue under test. The driver counts lines to find lost and
duplicated jobs, and reads the start times for latency.

Standard library only: this module is imported by every peer's app, in every peer's venv.
"""

from __future__ import annotations

import os
import time

_fd: int | None = None


def _open() -> int:
    global _fd
    if _fd is None:
        path = os.environ.get("BENCH_RECORD")
        if not path:
            raise RuntimeError("BENCH_RECORD is not set: start the worker through a benchmark driver")
        _fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    return _fd


def record(index: int, start: float, end: float | None = None) -> None:
    """Record one handler run of job ``index`` that started at ``start`` (``time.time()``)."""
    line = f"{index} {start!r}\n" if end is None else f"{index} {start!r} {end!r}\n"
    os.write(_open(), line.encode())


def noop(index: int) -> None:
    """The W1/W2 handler body: record the start and return."""
    record(index, time.time())


async def sleep_job(index: int, seconds: float = 0.05) -> None:
    """The W3 handler body: ``await asyncio.sleep(seconds)``, recording start and end."""
    import asyncio

    start = time.time()
    await asyncio.sleep(seconds)
    record(index, start, time.time())
