"""The Prometheus metrics of jobs, workers and broker calls, kept up to date from the event seam.

Every metric is labelled by ``task`` and ``queue`` (never by job id); broker calls by
``operation``. The counters of one process add up across its workers; Prometheus adds the
``instance`` label.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.registry import Collector

from asynctask.events import Observer
from asynctask.models import Job, NewJob, Outcome, OutcomeKind

__all__ = ["DURATION_BUCKETS", "BROKER_BUCKETS", "JobMetrics"]

#: Seconds: handler run time and queue wait, from 5 ms to an hour.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)
#: Seconds: one broker round trip, from half a millisecond to ten seconds (the default deadline).
BROKER_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

_OUTCOMES = {
    OutcomeKind.SUCCEEDED: "succeeded",
    OutcomeKind.FAILED: "failed",
    OutcomeKind.CANCELLED: "cancelled",
    OutcomeKind.RETRY: "retried",
    OutcomeKind.RELEASE: "released",
    OutcomeKind.PAUSE: "paused",
}
#: Waiting for new jobs is not a round trip: it lasts up to the poll interval.
_UNTIMED = frozenset({"wait_for_jobs"})


class _Labelled:
    """The children of one ``(task, queue)`` pair, looked up once (``labels()`` takes a lock)."""

    __slots__ = ("outcomes", "published", "run_time", "running", "started", "waited")

    def __init__(self, metrics: JobMetrics, task: str, queue: str) -> None:
        self.published = metrics.jobs_published.labels(task, queue)
        self.started = metrics.jobs_started.labels(task, queue)
        self.running = metrics.jobs_running.labels(task, queue)
        self.run_time = metrics.run_seconds.labels(task, queue)
        self.waited = metrics.queue_wait_seconds.labels(task, queue)
        self.outcomes = {
            name: metrics.job_outcomes.labels(task, queue, name) for name in (*_OUTCOMES.values(), "lost")
        }


class JobMetrics(Observer):
    """Counters, gauges and histograms on ``registry``, fed by the events of an app and its workers."""

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        clock: Callable[[], float] = time.time,
        buckets: Sequence[float] = DURATION_BUCKETS,
        broker_buckets: Sequence[float] = BROKER_BUCKETS,
    ) -> None:
        self.clock = clock
        labels = ("task", "queue")
        self.jobs_published = Counter(
            "asynctask_jobs_published",
            "Jobs published (created: an existing id does not count).",
            labels,
            registry=registry,
        )
        self.jobs_started = Counter("asynctask_jobs_started", "Attempts started.", labels, registry=registry)
        self.job_outcomes = Counter(
            "asynctask_job_outcomes",
            "Attempts ended, by outcome: succeeded, failed (for good), retried, cancelled, released "
            "(handed back on shutdown), paused, lost (the lease had passed to another worker).",
            (*labels, "outcome"),
            registry=registry,
        )
        self.run_seconds = Histogram(
            "asynctask_job_run_seconds", "Time an attempt took.", labels, registry=registry, buckets=buckets
        )
        self.queue_wait_seconds = Histogram(
            "asynctask_job_queue_wait_seconds",
            "Time from when a job was due to when its attempt started.",
            labels,
            registry=registry,
            buckets=buckets,
        )
        self.jobs_running = Gauge(
            "asynctask_jobs_running", "Attempts running now.", labels, registry=registry
        )
        self.worker_capacity = Gauge(
            "asynctask_worker_capacity",
            "Attempts the workers of this process may run at once.",
            registry=registry,
        )
        self.broker_seconds = Histogram(
            "asynctask_broker_call_seconds",
            "Round trips to the broker, by operation.",
            ("operation",),
            registry=registry,
            buckets=broker_buckets,
        )
        self.broker_errors = Counter(
            "asynctask_broker_errors",
            "Broker calls that failed, by operation.",
            ("operation",),
            registry=registry,
        )
        #: Every metric above, to unregister them.
        self.collectors: list[Collector] = [
            self.jobs_published,
            self.jobs_started,
            self.job_outcomes,
            self.run_seconds,
            self.queue_wait_seconds,
            self.jobs_running,
            self.worker_capacity,
            self.broker_seconds,
            self.broker_errors,
        ]
        self._children: dict[tuple[str, str], _Labelled] = {}
        #: The task and queue of each claim held by a worker here, until its outcome is reported;
        #: by id and token, since a retried job may be claimed again before its retry is counted.
        self._held: dict[tuple[str, int], tuple[str, str]] = {}

    def _of(self, task: str, queue: str) -> _Labelled:
        key = (task, queue)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = _Labelled(self, task, queue)
        return found

    # --- events ----------------------------------------------------------------------------------------

    def published(self, jobs: Sequence[NewJob], created: Sequence[bool]) -> None:
        for job, new in zip(jobs, created, strict=False):
            if new:
                self._of(job.task, job.queue).published.inc()

    def worker_started(self, worker_id: str, concurrency: int) -> None:
        self.worker_capacity.inc(concurrency)

    def worker_stopped(self, worker_id: str, concurrency: int) -> None:
        self.worker_capacity.dec(concurrency)

    def jobs_claimed(self, queue: str, jobs: Sequence[Job]) -> None:
        held = self._held
        for job in jobs:
            held[job.id, job.token] = (job.task, job.queue)

    def attempt_started(self, job: Job) -> None:
        labelled = self._of(job.task, job.queue)
        labelled.started.inc()
        labelled.running.inc()
        labelled.waited.observe(max(self.clock() - job.run_at, 0.0))

    def attempt_finished(
        self, job: Job, outcome: Outcome | None, error: BaseException | None, seconds: float
    ) -> None:
        labelled = self._of(job.task, job.queue)
        labelled.running.dec()
        labelled.run_time.observe(seconds)
        if outcome is None:  # the lease was lost: nothing will be reported
            self._held.pop((job.id, job.token), None)
            labelled.outcomes["lost"].inc()

    def outcomes_reported(self, outcomes: Sequence[Outcome], applied: Sequence[bool]) -> None:
        held = self._held
        for outcome, ok in zip(outcomes, applied, strict=False):
            labels = held.pop((outcome.job_id, outcome.token), None)
            if labels is None:
                continue  # not claimed through an observed worker
            self._of(*labels).outcomes[_OUTCOMES[outcome.kind] if ok else "lost"].inc()

    def broker_call(self, operation: str, seconds: float, error: BaseException | None) -> None:
        if error is not None:
            self.broker_errors.labels(operation).inc()
        elif operation not in _UNTIMED:
            self.broker_seconds.labels(operation).observe(seconds)
