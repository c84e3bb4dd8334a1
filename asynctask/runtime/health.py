"""A worker's health, for liveness and readiness probes (``/healthz``, ``/readyz``).

:class:`Health` observes one worker (its events: broker calls, attempts) and ticks on the worker's
event loop. It is read from another thread (the probe server's), so a probe gets an answer even
while the event loop is blocked, and the answer says so:

* **live** (``/healthz``): the event loop has run within ``threshold`` seconds (a handler calling
  ``time.sleep`` or CPU-bound code blocks every other job of the worker), the worker runs, and
  while it has room for jobs and the broker answers, its fetchers have asked for work within
  ``threshold`` seconds beyond their longest rightful pause (``poll_interval + broker_timeout``:
  one wait for new jobs, one call that times out). A broker outage is not a reason to restart the
  worker: readiness reports it;
* **ready** (``/readyz``): live, started and not stopping, and the broker answered the worker's
  last call (a claim, a completion, a heartbeat...).

Time is the monotonic clock (``time.monotonic``), not the app's clock: a probe measures real
time even in a test on a fake clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import anyio
import msgspec

from asynctask.events import Observer
from asynctask.runtime.worker import Worker

__all__ = ["Health", "Verdict"]

#: Broker calls that are the fetchers asking for work.
_CLAIM_LOOP = frozenset({"claim", "wait_for_jobs", "wait_and_claim"})


class Verdict(msgspec.Struct, frozen=True):
    """A probe's answer: ``ok``, and why not (or what was checked)."""

    ok: bool
    reason: str

    def __bool__(self) -> bool:
        return self.ok


class Health(Observer):
    """The health of ``worker``; subscribes itself to ``worker.events``.

    Run :meth:`run` on the worker's event loop (its ticks prove the loop runs); read
    :meth:`live` and :meth:`ready` from any thread.
    """

    def __init__(
        self, worker: Worker, *, threshold: float = 30.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if threshold <= 0:
            raise ValueError("the health threshold must be > 0 seconds")
        self.worker = worker
        self.threshold = threshold
        self.clock = clock
        now = clock()
        self.last_tick = now
        self.last_claim_loop = now
        #: When the worker started (or this object was made).
        self.since = now
        self.started = False
        self.stopped = False
        #: The error of the worker's last broker call, ``None`` when it succeeded.
        self.broker_error: str | None = None
        self.last_broker_ok: float | None = None
        worker.events.subscribe(self)

    def __repr__(self) -> str:
        return f"<Health {self.worker.id} live={self.live().ok} ready={self.ready().ok}>"

    async def run(self) -> None:
        """Tick until cancelled: each tick proves the event loop runs."""
        interval = min(self.threshold / 4, 1.0)
        while True:
            self.last_tick = self.clock()
            await anyio.sleep(interval)

    # --- probes (any thread) ------------------------------------------------------------------

    def live(self) -> Verdict:
        now = self.clock()
        blocked = now - self.last_tick
        if blocked > self.threshold:
            return Verdict(False, f"the event loop has been blocked for {blocked:.1f}s")
        if self.stopped:
            return Verdict(False, "the worker has stopped")
        idle = now - self.last_claim_loop
        # A fetcher may rightly be silent for one wait and one broker deadline; while the broker
        # fails, it backs off between claims (readiness says so).
        worker = self.worker
        allowed = self.threshold + worker.poll_interval + worker.broker_timeout
        if self.started and self.broker_error is None and idle > allowed and worker.wants_jobs:
            return Verdict(False, f"the worker has room for jobs but has not claimed any for {idle:.1f}s")
        return Verdict(True, "the event loop runs and the worker claims jobs")

    def ready(self) -> Verdict:
        live = self.live()
        if not live:
            return live
        if not self.started:
            return Verdict(False, "the worker has not started yet")
        if not self.worker.running:
            return Verdict(False, "the worker is stopping")
        if self.broker_error is not None:
            return Verdict(False, f"the broker does not answer: {self.broker_error}")
        silent = self.clock() - (self.last_broker_ok if self.last_broker_ok is not None else self.since)
        if silent > self.threshold:
            return Verdict(False, f"the broker has not answered for {silent:.1f}s")
        return Verdict(True, "the worker claims jobs and the broker answers")

    # --- the worker's events (its event loop) ----------------------------------------------------

    def worker_started(self, worker_id: str, concurrency: int) -> None:
        if worker_id == self.worker.id:
            self.started, self.stopped = True, False
            self.since = self.last_claim_loop = self.clock()

    def worker_stopped(self, worker_id: str, concurrency: int) -> None:
        if worker_id == self.worker.id:
            self.stopped = True

    def broker_call(self, operation: str, seconds: float, error: BaseException | None) -> None:
        now = self.clock()
        # A worker with no room for jobs claims nothing, rightly: live() asks worker.wants_jobs.
        if operation in _CLAIM_LOOP:
            self.last_claim_loop = now
        if error is None:
            self.broker_error = None
            self.last_broker_ok = now
        else:
            self.broker_error = f"{operation}: {str(error) or type(error).__name__}"
