"""What observing costs (issue #14): the same worker with and without metrics or tracing.

    python -m benchmarks.observability                       # redis, 8 rounds of 5,000 jobs
    python -m benchmarks.observability --broker postgres --jobs 5000 --rounds 6
    python -m benchmarks.observability --variants tracing,tracing-1% --rounds 20
    python -m benchmarks.observability --hooks                # the hooks alone, per job

One process runs a worker (concurrency 100) over N no-op jobs per round, once per variant, the
variants interleaved round after round; it reports the process's CPU time per job while the
worker drains (medians, and the ratio to no observer: of the medians, and the median of each
round's ratio to the same round's ``off``, which follows a load that drifts). Interleaving in one
process keeps a busy machine's noise out of the comparison better than separate runs do: the W1
variants of ``python -m benchmarks --systems asynctask-redis,asynctask-redis-metrics,...``
measure the same end to end, with the CLI, and swing by tens of percent from run to run when the
cores are shared.

Variants: ``off``; ``metrics`` (asynctask.metrics and the health observer, what
``--metrics-port`` adds); ``tracing-unset`` (instrumented, no tracer provider); ``tracing`` (the
OpenTelemetry SDK recording every span, no exporter); ``tracing-1%`` (the SDK with
``ParentBased(TraceIdRatioBased(0.01))``).
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid
from collections.abc import Callable
from typing import Any

import anyio

from asynctask import App, JobCtx, JobSpec
from benchmarks.peers.targets import TARGETS

VARIANTS = ("off", "metrics", "tracing-unset", "tracing", "tracing-1%")


class Variant:
    """One app (its own key prefix or schema) with one way of observing."""

    def __init__(self, name: str, broker: str, jobs: int) -> None:
        self.name, self.jobs = name, jobs
        self.namespace = f"obs_{uuid.uuid4().hex[:8]}"
        self.broker = broker
        self.app = App(TARGETS[broker].url(self.namespace) if broker != "memory" else "memory://")
        self.done = anyio.Event()
        self.count = 0
        self.health: Callable[[Any], Any] | None = None

        @self.app.task
        async def noop(ctx: JobCtx, i: int) -> None:
            self.count += 1
            if self.count == self.jobs:
                self.done.set()

        observe(name, self)

    async def round(self) -> float:
        """CPU microseconds per job for one drain of ``jobs`` jobs."""
        self.count, self.done = 0, anyio.Event()
        async with self.app:
            for lo in range(0, self.jobs, 5000):
                await self.app.publish_many(
                    [JobSpec("noop", i) for i in range(lo, min(self.jobs, lo + 5000))]
                )
            worker = self.app.worker(concurrency=100, poll_interval=0.05)
            if self.health is not None:
                self.health(worker)
            async with anyio.create_task_group() as tg:
                await tg.start(worker.run)
                started = time.process_time()
                await self.done.wait()
                spent = time.process_time() - started
                worker.stop()
        return spent / self.jobs * 1e6

    async def drop(self) -> None:
        if self.broker != "memory":
            await TARGETS[self.broker].wipe(self.namespace)


def observe(name: str, variant: Variant) -> None:
    app = variant.app
    if name == "metrics":
        from prometheus_client import CollectorRegistry

        from asynctask.metrics import Metrics
        from asynctask.runtime.health import Health

        Metrics(app, registry=CollectorRegistry())
        variant.health = Health
    elif name.startswith("tracing"):
        from asynctask.tracing import instrument

        if name == "tracing-unset":
            instrument(app)
            return
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

        sampler = ParentBased(TraceIdRatioBased(0.01)) if name == "tracing-1%" else None
        instrument(app, tracer_provider=TracerProvider(sampler=sampler) if sampler else TracerProvider())


async def compare(broker: str, jobs: int, rounds: int, names: tuple[str, ...] = VARIANTS) -> None:
    variants = [Variant(name, broker, jobs) for name in dict.fromkeys(("off", *names))]
    results: dict[str, list[float]] = {v.name: [] for v in variants}
    try:
        for r in range(rounds):
            for variant in variants[r % len(variants) :] + variants[: r % len(variants)]:
                results[variant.name].append(await variant.round())
    finally:
        for variant in variants:
            await variant.drop()
    base = statistics.median(results["off"])
    print(f"{broker}: {rounds} rounds of {jobs:,} no-op jobs, concurrency 100; worker CPU per job")
    print("  (ratio: of the medians; paired: the median of each round's ratio to that round's off)")
    for name, values in results.items():
        median = statistics.median(values)
        paired = statistics.median(v / off for v, off in zip(values, results["off"], strict=True))
        print(
            f"  {name:14} {median:7.1f} us/job  {median / base:5.2f}x  paired {paired:5.2f}x"
            f"  (min {min(values):.1f})"
        )


def hooks(jobs: int) -> None:
    """The hooks a worker calls for one job, alone (no broker, no handler)."""
    from asynctask.events import Events, Observer
    from asynctask.metrics.observer import JobMetrics
    from asynctask.models import Job, JobStatus, NewJob, Outcome, OutcomeKind
    from asynctask.tracing import Tracing

    def tracing(ratio: float | None) -> list[Observer]:
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

        sampler = ParentBased(TraceIdRatioBased(ratio)) if ratio is not None else None
        return [Tracing(TracerProvider(sampler=sampler) if sampler else TracerProvider())]

    makers: dict[str, Callable[[], list[Observer]]] = {
        "tracing-unset": lambda: [Tracing()],
        "metrics": lambda: [JobMetrics()],
        "tracing": lambda: tracing(None),
        "tracing-1%": lambda: tracing(0.01),  # the job's trace is sampled out (99 times in 100)
    }
    print("the hooks of one job, alone:")
    for name, make in makers.items():
        events = Events(make())
        new = [NewJob(id="0" * 32, task="noop", queue="bench", payload=b"1", run_at=time.time())]
        events.prepare(new)
        now = time.time()
        job = Job(
            id=new[0].id, task="noop", queue="bench", payload=b"1", status=JobStatus.RUNNING,
            run_at=now, created_at=now, token=1, attempts=1, headers=new[0].headers,
        )  # fmt: skip
        outcome = Outcome(job_id=job.id, token=1, kind=OutcomeKind.SUCCEEDED)
        started = time.perf_counter()
        for _ in range(jobs):
            events.jobs_claimed("bench", [job])
            events.attempt_started(job)
            events.attempt_finished(job, outcome, None, 0.001)
            events.outcomes_reported([outcome], [True])
        print(f"  {name:14} {(time.perf_counter() - started) / jobs * 1e6:7.2f} us/job")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--broker", choices=[*TARGETS, "memory"], default="redis")
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument(
        "--variants",
        default=",".join(VARIANTS),
        help=f"comma-separated subset of {', '.join(VARIANTS).replace('%', '%%')} (off is always run);"
        " fewer variants interleave more tightly",
    )
    parser.add_argument("--hooks", action="store_true", help="time the hooks alone instead")
    args = parser.parse_args()
    if args.hooks:
        hooks(max(args.jobs, 20_000))
        return
    names = tuple(name.strip() for name in args.variants.split(",") if name.strip())
    unknown = [name for name in names if name not in VARIANTS]
    if unknown:
        parser.error(f"unknown variant(s) {', '.join(unknown)}; known: {', '.join(VARIANTS)}")
    anyio.run(compare, args.broker, args.jobs, args.rounds, names, backend_options={"use_uvloop": True})


if __name__ == "__main__":
    main()
