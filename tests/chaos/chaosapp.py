"""The app the chaos workers run (``tests.chaos.chaosapp:app``), with a ledger kept outside the queue.

Every run of ``work`` appends a ``start`` line before its body and an ``end`` line after it to the
file ``CHAOS_LEDGER`` names: ``start <job id> <attempt> <pid> <time> <claimed at>`` (the claim's
time as the broker recorded it, ``ctx.started_at``). Each line is one
``write`` on a descriptor opened with ``O_APPEND`` for that line alone (no buffer to lose on
SIGKILL, no interleaving between processes), so the ledger says what really ran, whatever the
broker recorded. ``poison`` does what a careless handler can: ``sys.exit()``,
``KeyboardInterrupt``, a bare ``BaseException``, a result that cannot be encoded.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

import anyio

from asynctask import App, JobCtx

app = App()

#: Attempts a job may take: kills and outages must never be what fails it.
MAX_RETRIES = 50


def note(event: str, ctx: JobCtx) -> None:
    line = f"{event} {ctx.id} {ctx.attempt} {os.getpid()} {time.time():.6f} {ctx.started_at:.6f}\n".encode()
    fd = os.open(os.environ["CHAOS_LEDGER"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


@app.task(queue="chaos", max_retries=MAX_RETRIES, timeout=60)
async def work(ctx: JobCtx, n: int) -> int:
    note("start", ctx)
    await anyio.sleep(float(os.environ.get("CHAOS_JOB_SECONDS", "0.005")))
    note("end", ctx)
    return n


def _recursive() -> list[Any]:
    items: list[Any] = []
    items.append(items)
    return items


@app.task(queue="chaos", max_retries=0, timeout=60)
async def poison(ctx: JobCtx, kind: str) -> Any:
    note("start", ctx)
    if kind == "sys.exit":
        sys.exit(3)
    if kind == "KeyboardInterrupt":
        raise KeyboardInterrupt
    if kind == "BaseException":
        raise BaseException("a bare BaseException")
    if kind == "lone surrogate":
        return "\udc80"
    if kind == "recursive list":
        return _recursive()
    if kind == "object":
        return object()
    raise ValueError(f"unknown poison {kind!r}")
