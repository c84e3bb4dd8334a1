"""The monitoring port of a CLI worker, over HTTP: metrics after real work, health probes that
fail and recover, and the CLI's workers, queues and check commands."""

from __future__ import annotations

import signal
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

from asynctask import JobSpec
from asynctask.brokers.redis.keys import Keys
from asynctask.testing import wait_until
from tests.backend_redis import REDIS_URL
from tests.observability.cli import CliWorker, cli_worker, run_cli, write_app
from tests.redis.server import RedisServer

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


@pytest.fixture
async def shared_redis() -> AsyncIterator[str]:
    """A broker URL on the shared Redis with a fresh prefix, deleted afterwards."""
    prefix = f"t:{uuid.uuid4().hex}"
    yield f"{REDIS_URL}?prefix={prefix}"
    client = Redis.from_url(REDIS_URL)
    try:
        keys = [key async for key in client.scan_iter(match=Keys(prefix).pattern(), count=1000)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    directory = tmp_path / "redis"
    directory.mkdir()
    server = RedisServer(directory)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def scrape(worker: CliWorker) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of ``/metrics``, by name and sorted labels."""
    status, body = worker.get("/metrics")
    assert status == 200, body
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
    }


def sample(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_metrics_of_a_cli_worker_after_100_jobs(tmp_path: Path, shared_redis: str) -> None:
    app = write_app(tmp_path)
    app.set_broker(shared_redis)
    async with app:
        specs = [JobSpec("ok", n) for n in range(70)]
        specs += [JobSpec("flaky", n) for n in range(20)]
        specs += [JobSpec("broken", n) for n in range(10)]
        await app.publish_many(specs)
        await app.publish_many([JobSpec("parked") for _ in range(5)])  # a queue nobody consumes
    with cli_worker(tmp_path, shared_redis, "-q", "work", "-c", "20", "--poll-interval", "0.05") as worker:
        samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}

        def outcomes(task: str, outcome: str) -> float:
            return sample(samples, "asynctask_job_outcomes_total", task=task, queue="work", outcome=outcome)

        def done() -> bool:
            # The broker has every outcome a moment before the worker counts it, and the queue
            # statistics are cached for a few seconds: wait until both tell the end.
            nonlocal samples
            samples = scrape(worker) if worker.get("/healthz")[0] else {}
            depth = {
                s: sample(samples, "asynctask_queue_jobs", queue="work", status=s)
                for s in ("succeeded", "failed")
            }
            counted = (
                outcomes("ok", "succeeded") + outcomes("flaky", "succeeded") + outcomes("broken", "failed")
            )
            return depth == {"succeeded": 90, "failed": 10} and counted == 100

        await wait_until(done, timeout=60, interval=0.1)

        assert (outcomes("ok", "succeeded"), outcomes("flaky", "succeeded")) == (70, 20)
        assert (outcomes("flaky", "retried"), outcomes("broken", "failed")) == (20, 10)
        assert outcomes("ok", "failed") == outcomes("broken", "retried") == 0
        started = {
            task: sample(samples, "asynctask_jobs_started_total", task=task, queue="work")
            for task in ("ok", "flaky", "broken")
        }
        assert started == {"ok": 70, "flaky": 40, "broken": 10}
        runs = sum(sample(samples, "asynctask_job_run_seconds_count", task=t, queue="work") for t in started)
        assert runs == 120
        assert sample(samples, "asynctask_job_queue_wait_seconds_count", task="flaky", queue="work") == 40
        assert sample(samples, "asynctask_worker_capacity") == 20
        assert sample(samples, "asynctask_jobs_running", task="ok", queue="work") == 0
        assert sample(samples, "asynctask_broker_call_seconds_count", operation="claim") >= 1
        assert sample(samples, "asynctask_broker_call_seconds_count", operation="complete") >= 1
        # Read from the broker, not counted by the worker: a queue it does not even consume.
        assert sample(samples, "asynctask_queue_jobs", queue="parked", status="queued") == 5
        assert sample(samples, "asynctask_queue_jobs", queue="work", status="queued") == 0
        assert sample(samples, "asynctask_queue_oldest_ready_age_seconds", queue="parked") > 0
        assert sample(samples, "asynctask_queue_stats_up") == 1
        # The process collector of the default registry is served too.
        assert sample(samples, "process_cpu_seconds_total") > 0


async def test_probes_fail_and_recover(tmp_path: Path, own_redis: RedisServer) -> None:
    app = write_app(tmp_path)
    url = own_redis.url
    args = ("--health-threshold", "0.5", "--poll-interval", "0.1", "--broker-timeout", "1")
    with cli_worker(tmp_path, url, *args) as worker:
        await wait_until(lambda: worker.probe("/readyz")[0] == 200, timeout=30)
        assert worker.probe("/healthz")[0] == 200
        assert run_cli(tmp_path, "check", "obsapp:app", "--port", str(worker.port), "--ready").returncode == 0

        # A handler blocks the event loop: /healthz fails, and says why, while it lasts.
        app.set_broker(url)
        async with app:
            await app.publish("block", 3.0)
        await wait_until(lambda: worker.probe("/healthz")[0] == 503, timeout=30)
        assert "blocked" in worker.probe("/healthz")[1]
        assert run_cli(tmp_path, "check", "obsapp:app", "--port", str(worker.port)).returncode == 1
        await wait_until(lambda: worker.probe("/healthz")[0] == 200, timeout=30)

        # The broker goes away: /readyz fails; the worker itself is fine (no restart wanted).
        own_redis.kill()
        await wait_until(lambda: worker.probe("/readyz")[0] == 503, timeout=30)
        _status, reason = worker.probe("/readyz")
        assert "broker" in reason, reason
        assert worker.probe("/healthz")[0] == 200
        check = run_cli(tmp_path, "check", "obsapp:app", "--port", str(worker.port), "--ready")
        assert check.returncode == 1 and check.stdout.startswith("fail: "), check
        assert run_cli(tmp_path, "check", "obsapp:app", "--broker", url).returncode == 1

        # It comes back: so does readiness.
        own_redis.start()
        await wait_until(lambda: worker.probe("/readyz")[0] == 200, timeout=30)
        assert run_cli(tmp_path, "check", "obsapp:app", "--broker", url).returncode == 0


async def test_workers_and_queues_commands(tmp_path: Path, shared_redis: str) -> None:
    app = write_app(tmp_path)
    app.set_broker(shared_redis)
    async with app:
        await app.publish("parked")
    with cli_worker(tmp_path, shared_redis, "-q", "work", "-c", "3", "--lease", "0.6") as worker:
        await wait_until(lambda: worker.probe("/readyz")[0] == 200, timeout=30)
        listed = run_cli(tmp_path, "workers", "obsapp:app", "--broker", shared_redis)
        assert listed.returncode == 0, listed.stderr
        assert f"pid={worker.process.pid}" in listed.stdout and "queues=work" in listed.stdout
        assert "running=0/3" in listed.stdout
        queues = run_cli(tmp_path, "queues", "obsapp:app", "--broker", shared_redis)
        assert queues.returncode == 0, queues.stderr
        [parked] = [line for line in queues.stdout.splitlines() if line.startswith("parked")]
        assert "queued=1" in parked and "oldest_ready=" in parked and "oldest_ready=-" not in parked
        # Killed outright: it cannot say goodbye, and is gone once its record expires.
        worker.stop(signal.SIGKILL)
        async with app:

            async def gone() -> bool:
                return not await app.list_workers()

            await wait_until(gone, timeout=10)
    assert "no live workers" in run_cli(tmp_path, "workers", "obsapp:app", "--broker", shared_redis).stdout
    # A worker that stops cleanly takes its record out at once.
    with cli_worker(tmp_path, shared_redis, "-q", "work") as worker:
        await wait_until(lambda: worker.probe("/readyz")[0] == 200, timeout=30)
        async with app:
            assert [w.pid for w in await app.list_workers()] == [worker.process.pid]
        worker.stop()
        async with app:
            assert await app.list_workers() == []


async def test_supervised_workers_serve_one_port_each(tmp_path: Path, shared_redis: str) -> None:
    write_app(tmp_path)
    with cli_worker(tmp_path, shared_redis, "--workers", "2", "-q", "work", ports=2) as first:
        for worker in (first, first.at(first.port + 1)):
            await wait_until(lambda worker=worker: worker.probe("/readyz")[0] == 200, timeout=60)
            assert b"asynctask_worker_capacity 10.0" in worker.get("/metrics")[1]


def test_a_non_positive_health_threshold_is_refused(tmp_path: Path) -> None:
    write_app(tmp_path)
    bad = run_cli(tmp_path, "worker", "obsapp:app", "--metrics-port", "2121", "--health-threshold", "0")
    assert bad.returncode == 2 and "--health-threshold must be > 0" in bad.stderr
