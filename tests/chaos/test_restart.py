"""Broker server restarts: the test runs its own server (Redis with ``appendonly yes`` and
``appendfsync always``; a PostgreSQL cluster), crashes it mid-run and starts it again on the same
port and data: once at once, once after a few seconds down.

Nothing may be lost and no job may run twice (no worker was killed; a restart shorter than the
lease must not cost a lease), except what the broker documents: a PostgreSQL crash may forget a
claim committed in its last moments (the claim does not wait for its WAL flush), and that job
runs again. Recovery, per restart: from the moment the server accepts
connections again until every worker has started a job it claimed after that moment.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.chaos.conftest import migrate
from tests.chaos.harness import (
    Figures,
    Ledger,
    Workers,
    judge,
    long_run,
    progress,
    publish,
    recovered,
    wait_finished,
)
from tests.chaos.servers import PostgresServer, RedisServer

#: The long version runs for minutes; the default per-test timeout (120 s) fits the short one.
pytestmark = pytest.mark.timeout(1200 if long_run() else 120)

JOBS = 1_000
WORKERS = 2
CONCURRENCY = 8
#: The unbroken run lasts about this long (short version, long version).
SECONDS = 5.0
LONG_SECONDS = 70.0
#: Longer than the outage: a lease must outlive it, or a job whose run ended during the outage
#: (its outcome not yet stored) is rescued and run again, rightly, at least once.
LEASE = 20.0 if long_run() else 6.0
BROKER_TIMEOUT = 2.0


#: How long before a crash a PostgreSQL claim may be forgotten: 3 x wal_writer_delay (0.6 s by
#: default) plus slack for the ledger's timestamp, taken after the claim returned.
FORGOTTEN = 1.0


@dataclass
class OwnServer:
    url: str
    crash: Callable[[], None]
    start: Callable[[], None]
    #: Seconds before a crash within which a claim may be forgotten (0: none is).
    forgotten: float = 0.0


@pytest.fixture
def own_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OwnServer]:
    name: str = request.param
    if name == "redis":
        (tmp_path / "redis").mkdir()
        redis = RedisServer(tmp_path / "redis", "--appendonly", "yes", "--appendfsync", "always")
        try:
            redis.start()
            yield OwnServer(f"{redis.url}?prefix=chaos", redis.kill, redis.start)
        finally:
            redis.stop()
    else:
        postgres = PostgresServer()
        try:
            postgres.init()
            postgres.start()
            url = f"{postgres.url}?schema=chaos"
            migrate(url)
            yield OwnServer(url, postgres.stop_immediate, postgres.start, forgotten=FORGOTTEN)
        finally:
            postgres.stop()


@pytest.mark.parametrize("own_url", ["postgres", "redis"], indirect=True)
def test_a_restarted_server_loses_nothing_and_workers_come_back(
    own_url: OwnServer, tmp_path: Path, report: Callable[[Figures], None], broker_name: str
) -> None:
    url = own_url.url
    scale = 10 if long_run() else 1
    jobs, seconds = JOBS * scale, LONG_SECONDS if long_run() else SECONDS
    down = 10.0 if long_run() else 3.0
    ledger = Ledger(tmp_path / "ledger")
    started = time.time()
    published = publish(url, "work", range(jobs), [f"job-{n}" for n in range(jobs)])
    options = ["-c", str(CONCURRENCY), "--lease", str(LEASE), "--maintenance-interval", "0.5"]
    options += ["--broker-timeout", str(BROKER_TIMEOUT), "--poll-interval", "0.5", "--shutdown-grace", "5"]
    env = {"CHAOS_JOB_SECONDS": f"{seconds * WORKERS * CONCURRENCY / jobs:.4f}"}
    workers = Workers(url, tmp_path, ledger.path, options, env)
    recoveries: dict[str, float] = {}
    crashes: list[float] = []
    try:
        workers.start_all(WORKERS)
        for fraction, pause in ((0.2, 0.0), (0.5, down)):
            progress(url, fraction, jobs, workers)
            own_url.crash()
            crashes.append(time.time())
            if pause:
                # The outage's length is the fault itself (a timer, not synchronisation).
                time.sleep(pause)
            own_url.start()
            back = time.time()
            recoveries[f"down {pause:g} s"] = round(recovered(ledger, workers, back, timeout=30 + LEASE), 2)
        wait_finished(url, jobs, timeout=60 + seconds, workers=workers)
    finally:
        workers.stop_all()
    judge(
        test="server-restart",
        broker=broker_name,
        url=url,
        published=published,
        ledger=ledger,
        workers=workers,
        recovery=max(recoveries.values()),
        started=started,
        report=report,
        crashes=crashes,
        forgotten=own_url.forgotten,
        extra={"recoveries": recoveries, "lease": LEASE, "broker_timeout": BROKER_TIMEOUT},
    )
