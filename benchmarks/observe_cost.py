"""What observing costs per job, hook by hook, in this process (issue #14).

    python -m benchmarks.observe_cost [--jobs 50000]

Runs the hooks one worker calls for one job (claim, attempt start and end, the completion's
report, one broker call) and one publish, for each way of observing, and prints microseconds per
job next to the no-observer baseline. Broker round trips and handlers are left out on purpose:
this is the part observability adds. The W1 variants (``--systems asynctask-redis-metrics,...``)
measure the same end to end.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from asynctask.events import Events, Observer
from asynctask.models import Job, JobStatus, NewJob, Outcome, OutcomeKind


def variants() -> dict[str, Callable[[], list[Observer]]]:
    def metrics() -> list[Observer]:
        from asynctask.metrics.observer import JobMetrics

        return [JobMetrics()]

    def tracing(sampler: str | None) -> Callable[[], list[Observer]]:
        def make() -> list[Observer]:
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

            from asynctask.tracing import Tracing

            provider = TracerProvider(sampler=ALWAYS_OFF) if sampler else TracerProvider()
            return [Tracing(provider)]

        return make

    def tracing_unset() -> list[Observer]:
        from asynctask.tracing import Tracing

        return [Tracing()]  # no provider given, none set globally

    return {
        "none": list,
        "tracing, no provider": tracing_unset,
        "metrics": metrics,
        "tracing, SDK, no exporter": tracing(None),
        "tracing, SDK, sampled out": tracing("off"),
    }


def per_job(observers: list[Observer], jobs: int) -> tuple[float, float]:
    """Microseconds per job: worker side, publish side."""
    events = Events(observers)
    new = NewJob(id="0" * 32, task="noop", queue="bench", payload=b"1", run_at=time.time())
    batch = [new]
    events.prepare(batch)
    now = time.time()
    job = Job(
        id=new.id, task="noop", queue="bench", payload=b"1", status=JobStatus.RUNNING, run_at=now,
        created_at=now, token=1, attempts=1, headers=batch[0].headers,
    )  # fmt: skip
    outcome = Outcome(job_id=job.id, token=1, kind=OutcomeKind.SUCCEEDED)
    claimed, outcomes, applied = [job], [outcome], [True]
    observed = bool(events)
    started = time.perf_counter()
    for _ in range(jobs):
        if observed:  # what the worker does: nothing at all without observers
            events.jobs_claimed("bench", claimed)
            events.attempt_started(job)
            t = time.perf_counter()
            events.attempt_finished(job, outcome, None, time.perf_counter() - t)
            events.outcomes_reported(outcomes, applied)
            events.broker_call("complete", 0.001, None)
    worker = (time.perf_counter() - started) / jobs * 1e6
    started = time.perf_counter()
    for _ in range(jobs):
        if observed:
            events.publishing([new])(None)
            events.published(batch, applied)
    publish = (time.perf_counter() - started) / jobs * 1e6
    return worker, publish


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=50_000)
    args = parser.parse_args()
    print(f"{'observing':28} {'worker us/job':>14} {'publish us/job':>15}")
    for name, make in variants().items():
        worker, publish = per_job(make(), args.jobs)
        print(f"{name:28} {worker:14.2f} {publish:15.2f}")


if __name__ == "__main__":
    main()
