"""The Prometheus metrics of jobs, workers and broker calls, kept up to date from the event seam.

Every metric is labelled by ``task`` and ``queue`` (never by job id); broker calls by
``operation``. The counters of one process add up across its workers; Prometheus adds the
``instance`` label.

The hot path costs a few dictionary and list operations per job: values are plain Python
numbers, written only by the event loop's thread, and turned into metric families when
Prometheus scrapes (from any thread: the monitoring port's). prometheus_client's own metric
objects take a lock for every increment, which cost a quarter of a no-op job's time.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Callable, Iterator, Sequence
from typing import NamedTuple

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from asynctask.events import Observer
from asynctask.models import Job, NewJob, Outcome, OutcomeKind

__all__ = ["BROKER_BUCKETS", "DURATION_BUCKETS", "JobMetrics"]

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
_LOST = "lost"
#: Waiting for new jobs is not a round trip: it lasts up to the poll interval.
_UNTIMED = frozenset({"wait_for_jobs"})


class _Histogram:
    """Counts per bucket (the last one: above every bound) and the sum."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    def cumulative(self) -> tuple[list[tuple[str, float]], float]:
        counts, total = list(self.counts), self.sum  # copies: the loop may write meanwhile
        buckets, running = [], 0
        for bound, count in zip((*self.bounds, float("inf")), counts, strict=True):
            running += count
            buckets.append(("+Inf" if bound == float("inf") else repr(bound), float(running)))
        return buckets, total


class _Labelled:
    """Everything counted for one ``(task, queue)``."""

    __slots__ = ("outcomes", "published", "run", "running", "started", "wait")

    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.published = 0
        self.started = 0
        self.running = 0
        self.outcomes = dict.fromkeys((*_OUTCOMES.values(), _LOST), 0)
        self.run = _Histogram(buckets)
        self.wait = _Histogram(buckets)


class _Operation:
    __slots__ = ("errors", "time")

    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.time = _Histogram(buckets)
        self.errors = 0


class JobMetrics(Observer, Collector):
    """A Prometheus collector fed by the events of an app and its workers (register it once)."""

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        buckets: Sequence[float] = DURATION_BUCKETS,
        broker_buckets: Sequence[float] = BROKER_BUCKETS,
    ) -> None:
        self.clock = clock
        self.buckets = tuple(sorted(float(b) for b in buckets if b != float("inf")))
        self.broker_buckets = tuple(sorted(float(b) for b in broker_buckets if b != float("inf")))
        self.capacity = 0
        self._labelled: dict[tuple[str, str], _Labelled] = {}
        self._operations: dict[str, _Operation] = {}
        #: The task and queue of each claim held by a worker here, until its outcome is reported;
        #: by id and token, since a retried job may be claimed again before its retry is counted.
        self._held: dict[tuple[str, int], _Labelled] = {}

    def _of(self, task: str, queue: str) -> _Labelled:
        found = self._labelled.get((task, queue))
        if found is None:
            found = self._labelled[task, queue] = _Labelled(self.buckets)
        return found

    def _operation(self, name: str) -> _Operation:
        found = self._operations.get(name)
        if found is None:
            found = self._operations[name] = _Operation(self.broker_buckets)
        return found

    # --- events (the event loop's thread) ------------------------------------------------------------

    def published(self, jobs: Sequence[NewJob], created: Sequence[bool]) -> None:
        for job, new in zip(jobs, created, strict=False):
            if new:
                self._of(job.task, job.queue).published += 1

    def worker_started(self, worker_id: str, concurrency: int) -> None:
        self.capacity += concurrency

    def worker_stopped(self, worker_id: str, concurrency: int) -> None:
        self.capacity -= concurrency

    def jobs_claimed(self, queue: str, jobs: Sequence[Job]) -> None:
        held, labelled, of = self._held, self._labelled, self._of
        for job in jobs:
            held[job.id, job.token] = labelled.get((job.task, job.queue)) or of(job.task, job.queue)

    def attempt_started(self, job: Job) -> None:
        labelled = self._labelled.get((job.task, job.queue)) or self._of(job.task, job.queue)
        labelled.started += 1
        labelled.running += 1
        waited = self.clock() - job.run_at
        labelled.wait.observe(waited if waited > 0 else 0.0)

    def attempt_finished(
        self, job: Job, outcome: Outcome | None, error: BaseException | None, seconds: float
    ) -> None:
        labelled = self._labelled.get((job.task, job.queue)) or self._of(job.task, job.queue)
        labelled.running -= 1
        labelled.run.observe(seconds)
        if outcome is None:  # the lease was lost: nothing will be reported
            self._held.pop((job.id, job.token), None)
            labelled.outcomes[_LOST] += 1

    def outcomes_reported(self, outcomes: Sequence[Outcome], applied: Sequence[bool]) -> None:
        held = self._held
        for outcome, ok in zip(outcomes, applied, strict=False):
            labelled = held.pop((outcome.job_id, outcome.token), None)
            if labelled is not None:  # else: not claimed through an observed worker
                labelled.outcomes[_OUTCOMES[outcome.kind] if ok else _LOST] += 1

    def broker_call(self, operation: str, seconds: float, error: BaseException | None) -> None:
        if error is not None:
            self._operation(operation).errors += 1
        elif operation not in _UNTIMED:
            self._operation(operation).time.observe(seconds)

    # --- the collector (any thread) --------------------------------------------------------------------

    def describe(self) -> Iterator[Metric]:
        return iter(_Families.new())

    def collect(self) -> Iterator[Metric]:
        f = _Families.new()
        for (task, queue), labelled in list(self._labelled.items()):
            labels = [task, queue]
            f.published.add_metric(labels, labelled.published)
            f.started.add_metric(labels, labelled.started)
            f.running.add_metric(labels, labelled.running)
            for name, count in list(labelled.outcomes.items()):
                f.outcomes.add_metric([task, queue, name], count)
            f.run.add_metric(labels, *labelled.run.cumulative())
            f.wait.add_metric(labels, *labelled.wait.cumulative())
        f.capacity.add_metric([], self.capacity)
        for name, operation in list(self._operations.items()):
            f.broker_time.add_metric([name], *operation.time.cumulative())
            f.broker_errors.add_metric([name], operation.errors)
        return iter(f)


class _Families(NamedTuple):
    published: CounterMetricFamily
    started: CounterMetricFamily
    outcomes: CounterMetricFamily
    run: HistogramMetricFamily
    wait: HistogramMetricFamily
    running: GaugeMetricFamily
    capacity: GaugeMetricFamily
    broker_time: HistogramMetricFamily
    broker_errors: CounterMetricFamily

    @classmethod
    def new(cls) -> _Families:
        labels = ["task", "queue"]
        return cls(
            CounterMetricFamily(
                "asynctask_jobs_published",
                "Jobs published (an id that existed does not count).",
                labels=labels,
            ),
            CounterMetricFamily("asynctask_jobs_started", "Attempts started.", labels=labels),
            CounterMetricFamily(
                "asynctask_job_outcomes",
                "Attempts ended, by outcome: succeeded, failed (for good), retried, cancelled, released "
                "(handed back on shutdown), paused, lost (the lease had passed to another worker).",
                labels=[*labels, "outcome"],
            ),
            HistogramMetricFamily("asynctask_job_run_seconds", "Time an attempt took.", labels=labels),
            HistogramMetricFamily(
                "asynctask_job_queue_wait_seconds",
                "Time from when a job was due to when its attempt started.",
                labels=labels,
            ),
            GaugeMetricFamily("asynctask_jobs_running", "Attempts running now.", labels=labels),
            GaugeMetricFamily(
                "asynctask_worker_capacity",
                "Attempts the workers of this process may run at once.",
                labels=[],
            ),
            HistogramMetricFamily(
                "asynctask_broker_call_seconds",
                "Round trips to the broker, by operation.",
                labels=["operation"],
            ),
            CounterMetricFamily(
                "asynctask_broker_errors", "Broker calls that failed, by operation.", labels=["operation"]
            ),
        )
