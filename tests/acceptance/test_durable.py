"""Crash safety with real worker processes on the durable brokers (PostgreSQL, Redis, MongoDB).

* a worker SIGKILLed mid-job: another worker re-runs its jobs once their leases expire;
* an incremental task survives SIGKILL and resumes from its last saved state;
* three worker processes each run the periodic scheduler: every tick still runs once.
"""

from __future__ import annotations

import os
import signal
import textwrap
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import anyio
import pytest
import redis

from asynctask import App, Done, JobCtx, JobStatus
from asynctask.testing import wait_until
from tests.backend_mongo import drop_prefix
from tests.backend_postgres import URL as POSTGRES_URL
from tests.backend_postgres import drop_schema
from tests.mongo import server as mongo_server
from tests.workerprocs import WorkerProcesses, wait_for

REDIS_URL = os.environ.get("ASYNCTASK_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")

APP_MODULE = textwrap.dedent(
    """
    import os
    import anyio
    from asynctask import App, Done, Interval, JobCtx

    app = App(os.environ["ASYNCTASK_BROKER_URL"])

    def log(line: str) -> None:
        with open(os.environ["JOB_LOG"], "a") as f:
            f.write(line + "\\n")

    @app.task(max_retries=3)
    async def slow(ctx: JobCtx, n: int) -> int:
        log(f"start {n} {ctx.attempt}")
        await anyio.sleep(float(os.environ.get("JOB_SECONDS", "0.05")))
        log(f"end {n}")
        return n

    @app.incremental(max_retries=3)
    async def walk(ctx: JobCtx, n: int) -> int | Done[int]:
        log(f"step {n}")
        await anyio.sleep(0.02)
        return Done(n) if n == 40 else n + 1

    if os.environ.get("PERIODIC"):
        @app.periodic(Interval(0.4))
        async def tick(ctx: JobCtx) -> None:
            log(f"tick {ctx.id}")
    """
)


@pytest.fixture(params=["postgres", "redis", "mongo"])
def broker_url(request: pytest.FixtureRequest) -> Iterator[str]:
    name = uuid.uuid4().hex[:12]
    if request.param == "mongo":
        yield mongo_server.broker_url(f"t{name}")
        anyio.run(drop_prefix, f"t{name}")
    elif request.param == "postgres":
        schema = f"t_{name}"
        yield f"{POSTGRES_URL}?schema={schema}&auto_migrate=true"
        anyio.run(drop_schema, schema)
    else:
        prefix = f"t{name}"
        yield f"{REDIS_URL}?prefix={prefix}"
        client = redis.Redis.from_url(REDIS_URL)
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "durableapp.py").write_text(APP_MODULE)
    return tmp_path


@pytest.fixture
def workers(project: Path, broker_url: str) -> Iterator[WorkerProcesses]:
    options = ["--lease", "1", "--maintenance-interval", "0.2", "--poll-interval", "0.1"]
    group = WorkerProcesses(project, "durableapp:app", broker_url, options=options)
    try:
        yield group
    finally:
        group.stop_all()


def with_app(url: str, fn: Callable[[App], object]) -> object:
    async def go() -> object:
        app = App(url)

        # The same tasks as the workers' app: publishing needs their codecs.
        @app.task(name="slow", max_retries=3)
        async def slow(ctx: JobCtx, n: int) -> int:
            return n

        @app.incremental(name="walk", max_retries=3)
        async def walk(ctx: JobCtx, n: int) -> int | Done[int]:
            return n

        async with app:
            return await fn(app)  # type: ignore[misc]

    return anyio.run(go)


def test_sigkill_mid_job_loses_nothing(workers: WorkerProcesses, broker_url: str) -> None:
    async def publish(app: App) -> list[str]:
        handles = await app.publish_many([app.tasks["slow"].spec(n) for n in range(6)])
        return [h.id for h in handles]

    ids = with_app(broker_url, publish)
    doomed = workers.start("-c", "3", JOB_SECONDS="30")
    wait_for(lambda: sum(line.startswith("start") for line in workers.lines()) == 3)
    doomed.send_signal(signal.SIGKILL)
    doomed.wait(timeout=10)
    workers.start("-c", "6", JOB_SECONDS="0.05")
    wait_for(
        lambda: {line for line in workers.lines() if line.startswith("end")} == {f"end {n}" for n in range(6)}
    )

    async def statuses(app: App) -> list[tuple[JobStatus, int]]:
        # The ledger's "end" line is written before the worker reports the outcome: wait for it.
        async def finished() -> bool:
            jobs = [await app.get_job(i) for i in ids]  # type: ignore[union-attr]
            return all(j is not None and j.status.finished for j in jobs)

        await wait_until(finished, timeout=30)
        jobs = [await app.get_job(i) for i in ids]  # type: ignore[union-attr]
        return [(j.status, j.attempts) for j in jobs if j is not None]

    found = with_app(broker_url, statuses)
    assert [s for s, _ in found] == [JobStatus.SUCCEEDED] * 6  # type: ignore[union-attr]
    assert sorted(a for _, a in found) == [1, 1, 1, 2, 2, 2], "the killed attempts counted once each"  # type: ignore[union-attr]
    ends = [line for line in workers.lines() if line.startswith("end")]
    assert len(ends) == 6, "no job completed twice"


def test_incremental_task_resumes_after_sigkill(workers: WorkerProcesses, broker_url: str) -> None:
    async def publish(app: App) -> str:
        return (await app.publish("walk", 0)).id

    job_id = with_app(broker_url, publish)
    doomed = workers.start("-c", "2")
    wait_for(lambda: "step 12" in workers.lines())
    doomed.send_signal(signal.SIGKILL)
    doomed.wait(timeout=10)
    before = [int(line.split()[1]) for line in workers.lines()]
    workers.start("-c", "2")

    async def result(app: App) -> object:
        return await app.result(job_id, timeout=60)  # type: ignore[arg-type]

    assert with_app(broker_url, result) == 40
    steps = [int(line.split()[1]) for line in workers.lines()]
    after = steps[len(before) :]
    assert set(steps) == set(range(41))
    assert after[0] >= before[-1], "the new worker resumed from the saved state, not from the start"
    assert len(steps) - 41 <= 1, "at most the one step in flight at the kill ran twice"


def test_three_processes_run_each_periodic_tick_once(workers: WorkerProcesses) -> None:
    for _ in range(3):
        workers.start("-c", "4", PERIODIC="1")

    def ticks() -> list[str]:
        return [line.split()[1] for line in workers.lines() if line.startswith("tick")]

    wait_for(lambda: len(set(ticks())) >= 8)
    workers.stop_all()
    assert all(proc.returncode == 0 for proc in workers.procs)
    counts = Counter(ticks())
    assert max(counts.values()) == 1, [t for t, n in counts.items() if n > 1]
