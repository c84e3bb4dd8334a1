"""Burst mode (``asynctask worker --burst``, ``Worker(app, burst=True)``): stop once idle.

RQ's and arq's burst mode, for CI jobs and cron-style batch runs: the worker runs until every
queue it consumes has nothing it can claim and it holds no job, then stops gracefully (its run
returns normally). "Nothing it can claim" is what the broker answered: a claim made *after* the
worker last held a job came back short on every queue. So retries that are due at once and jobs
published meanwhile are run; jobs scheduled for later (a delay, a retry backoff) are left for the
next run, as are the jobs of a paused queue.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence

import anyio

from asynctask.models import Lease
from asynctask.runtime.fetcher import Fetcher

__all__ = ["stop_when_idle"]

log = logging.getLogger("asynctask.worker")


async def stop_when_idle(
    fetchers: Sequence[Fetcher], held: Mapping[str, Lease], stop: Callable[[], None], *, interval: float
) -> None:
    """Call ``stop()`` once ``held`` is empty and, on every queue, a claim sent after it emptied
    came back short.

    It looks at the worker's own state every ``interval`` seconds (no broker call of its own).
    """
    marks: list[int] | None = None
    while True:
        await anyio.sleep(interval)
        if held:
            marks = None
        elif marks is None:
            # Claims sent before now may have run before the last outcome was written.
            marks = [fetcher.claims_sent for fetcher in fetchers]
        elif all(f.claims > mark for f, mark in zip(fetchers, marks, strict=True)):
            if all(fetcher.dry for fetcher in fetchers):
                log.info(
                    "burst: no job left to claim in %s; stopping",
                    ", ".join(fetcher.queue for fetcher in fetchers),
                    extra={"action": "burst_done"},
                )
                stop()
                return
            marks = None
