"""Flow control with real worker processes (the CLI) on the durable brokers: PostgreSQL, Redis,
MongoDB, NATS.

Every handler run appends ``start``/``end`` lines with the time to one file (``O_APPEND``), so what
the workers did is measured outside the queue under test:

* ``global_concurrency=3``, four workers of four slots each: never more than three at once;
* ``rate_limit="50/s"``, four workers: the observed rate over a 10 s window is within 10%;
* an ``Interval(1)`` periodic task whose handler takes 2.5 s, two workers (the issue's case):
  with ``overlap=False`` (the default) one tick runs at a time;
* ``asynctask queues APP pause|resume|show`` stop and restart claiming, cluster-wide.
"""

from __future__ import annotations

import os
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
import redis

from asynctask import App, JobCtx
from tests.backend_mongo import drop_prefix
from tests.backend_postgres import URL as POSTGRES_URL
from tests.backend_postgres import drop_schema
from tests.mongo import server as mongo_server
from tests.workerprocs import WorkerProcesses, wait_for

REDIS_URL = os.environ.get("ASYNCTASK_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")

APP_MODULE = textwrap.dedent(
    """
    import os
    import time
    import anyio
    from asynctask import App, Interval, JobCtx

    app = App(os.environ["ASYNCTASK_BROKER_URL"])

    def log(*words: object) -> None:
        # One write per line, O_APPEND: lines of concurrent processes never interleave.
        fd = os.open(os.environ["JOB_LOG"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        try:
            os.write(fd, (" ".join(map(str, words)) + "\\n").encode())
        finally:
            os.close(fd)

    @app.task(global_concurrency=3)
    async def scarce(ctx: JobCtx, n: int) -> None:
        log("start", n, time.time())
        await anyio.sleep(0.15)
        log("end", n, time.time())

    @app.task(rate_limit=os.environ.get("RATE", "50/s"))
    async def metered(ctx: JobCtx, n: int) -> None:
        log("start", n, time.time())

    @app.task(queue="billing")
    async def bill(ctx: JobCtx, n: int) -> None:
        log("start", n, time.time())

    if os.environ.get("PERIODIC"):
        @app.periodic(Interval(1))
        async def tick(ctx: JobCtx) -> None:
            log("start", ctx.id, time.time())
            await anyio.sleep(2.5)
            log("end", ctx.id, time.time())
    """
)


@pytest.fixture(params=["postgres", "redis", "mongo", "nats"])
def broker_url(request: pytest.FixtureRequest) -> Iterator[str]:
    name = uuid.uuid4().hex[:12]
    if request.param == "mongo":
        yield mongo_server.broker_url(f"t{name}")
        anyio.run(drop_prefix, f"t{name}")
    elif request.param == "nats":
        from tests.backend_nats import server_url

        url = f"{server_url()}?prefix=t{name}"
        yield url
        anyio.run(_drop_nats_bucket, url)
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


async def _drop_nats_bucket(url: str) -> None:
    from asynctask.brokers.nats import NatsBroker

    broker = NatsBroker(url)
    await broker.open()
    try:
        await broker.store.drop()
    finally:
        await broker.close()


class Cluster(WorkerProcesses):
    """Worker processes (and CLI commands) of the test app on one broker."""

    def __init__(self, project: Path, url: str) -> None:
        super().__init__(project, "flowapp:app", url, options=["--poll-interval", "0.2"])

    def start_many(self, count: int, *args: str, **env: str) -> None:
        for _ in range(count):
            self.start(*args, **env)

    def events(self, kind: str) -> list[tuple[str, float]]:
        rows = (line.split() for line in self.lines())
        return [(words[1], float(words[2])) for words in rows if words[0] == kind]


@pytest.fixture
def cluster(tmp_path: Path, broker_url: str) -> Iterator[Cluster]:
    (tmp_path / "flowapp.py").write_text(APP_MODULE)
    group = Cluster(tmp_path, broker_url)
    try:
        yield group
    finally:
        group.stop_all()


def publish(url: str, task: str, count: int, queue: str = "default") -> None:
    async def go() -> None:
        app = App(url)

        # The workers' task, as far as publishing needs it (name, queue, payload type).
        @app.task(name=task, queue=queue)
        async def stub(ctx: JobCtx, n: int) -> None:
            return None

        async with app:
            await app.publish_many([stub.spec(i) for i in range(count)])

    anyio.run(go)


def peak_concurrency(starts: list[tuple[str, float]], ends: list[tuple[str, float]]) -> int:
    """The most runs in progress at once, from start and end times (an end before a start at the
    same instant: touching runs do not overlap)."""
    events = sorted([(t, 1) for _, t in starts] + [(t, -1) for _, t in ends])
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    return peak


def test_global_concurrency_holds_across_four_workers(cluster: Cluster) -> None:
    publish(cluster.url, "scarce", 60)
    cluster.start_many(4, "-c", "4")
    wait_for(lambda: len(cluster.events("end")) == 60)
    starts, ends = cluster.events("start"), cluster.events("end")
    assert sorted(n for n, _ in starts) == sorted(str(i) for i in range(60)), "each job ran once"
    peak = peak_concurrency(starts, ends)
    print(f"peak concurrency {peak} over {len(starts)} runs")
    assert peak == 3, "three at once at most, and the limit was reached"


@pytest.mark.slow
def test_rate_limit_holds_across_four_workers(cluster: Cluster) -> None:
    if cluster.url.startswith("mongodb") and not os.environ.get("ASYNCTASK_TEST_MONGO_URL"):
        # A limited claim is about six round trips of 20-80 ms each on the mongoeco test server,
        # serialised by the queue's lock: some 3 limited claims a second in all, below any rate
        # worth measuring. The rate rule itself is held on MongoDB by the contract suite (fake
        # clock) and tests/mongo/test_flow.py (racing claimers spend a shared bucket once).
        pytest.skip("mongoeco cannot sustain a measurable rate; set ASYNCTASK_TEST_MONGO_URL")
    limit = 50
    publish(cluster.url, "metered", 15 * limit)
    cluster.start_many(4, "-c", "8", RATE=f"{limit}/s")
    wait_for(lambda: len(cluster.events("start")) >= 14 * limit, timeout=90)
    times = sorted(t for _, t in cluster.events("start"))
    # Past the first second (the bucket starts full), a 10 s window of the steady rate.
    first = times[0] + 1.0
    in_window = sum(1 for t in times if first <= t < first + 10.0)
    rate = in_window / 10.0
    print(f"observed {rate:.1f} starts/s over 10 s (limit {limit}/s)")
    assert 0.9 * limit <= rate <= 1.1 * limit


def test_overlapping_ticks_run_one_at_a_time(cluster: Cluster) -> None:
    cluster.start_many(2, "-c", "4", PERIODIC="1")
    wait_for(lambda: len(cluster.events("end")) >= 3, timeout=30)
    cluster.stop_all()
    starts, ends = cluster.events("start"), cluster.events("end")
    assert peak_concurrency(starts, ends) == 1, f"ticks overlapped: {starts} {ends}"
    assert len({n for n, _ in starts}) == len(starts), "no tick ran twice"

    async def skipped() -> int:
        async with App(cluster.url) as app:
            return sum(1 for j in await app.list_jobs(status="cancelled") if "skipped" in (j.error or ""))

    assert anyio.run(skipped) >= 1, "ticks that came due while one ran were skipped, not piled up"


def test_queues_pause_and_resume_from_the_cli(cluster: Cluster) -> None:
    assert cluster.cli("queues", "flowapp:app", "pause", "billing") == "billing paused"
    cluster.start_many(2, "-q", "billing")
    publish(cluster.url, "bill", 5, queue="billing")
    assert cluster.cli("queues", "flowapp:app", "show", "billing") == "billing paused"

    async def queued() -> int:
        async with App(cluster.url) as app:
            return len(await app.list_jobs(status="queued", queue="billing"))

    deadline = time.monotonic() + 1.5  # a few of the workers' wake-ups: none claims
    while time.monotonic() < deadline:
        assert anyio.run(queued) == 5 and not cluster.events("start")
        time.sleep(0.1)
    assert (
        cluster.cli("queues", "flowapp:app", "--broker", cluster.url, "resume", "billing") == "billing active"
    )
    wait_for(lambda: len(cluster.events("start")) == 5, timeout=30)
