"""SIGKILL the NATS server mid-run and restart it on the same store: workers carry on alone."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest

from asynctask import JobStatus
from tests.nats.procs import Workers, final_statuses, publish
from tests.nats.server import NatsServer
from tests.workerprocs import wait_for

pytestmark = pytest.mark.slow

JOBS = 600


def test_workers_survive_a_server_crash_and_lose_nothing(tmp_path: Path) -> None:
    (tmp_path / "store").mkdir()
    server = NatsServer(tmp_path / "store")
    server.start()
    url = f"{server.url}?prefix=r{uuid.uuid4().hex[:10]}&request_timeout=2"
    project = tmp_path / "project"
    project.mkdir()
    workers = Workers(project, url)
    try:
        for _ in range(2):
            workers.start("-c", "20", "--lease", "3", "--maintenance-interval", "0.5", JOB_SECONDS="0.02")
        wait_for(workers.started, what="both workers started")
        ids = publish(url, JOBS)
        wait_for(lambda: len(workers.ledger.ended()) >= JOBS // 3, what="a third of the jobs done")
        server.kill()
        killed_at = time.time()
        time.sleep(2)  # the outage: workers see their requests fail and back off
        server.start()
        wait_for(lambda: workers.ledger.ended() == set(range(JOBS)), timeout=120, what="every job done")
        assert all(proc.poll() is None for proc in workers.procs), "no worker died or was restarted"

        assert final_statuses(url, ids) == [JobStatus.SUCCEEDED] * JOBS
        starts = workers.ledger.starts()
        first = workers.ledger.first_start()
        twice = sorted(n for n, count in starts.items() if count > 1)
        # A job may run twice only if its first run was in flight around the crash (a claim or
        # an outcome whose answer was lost): at-least-once, explained by the kill.
        unexplained = [n for n in twice if first[n] < killed_at - 10 or first[n] > killed_at + 30]
        assert unexplained == [], f"duplicates not explained by the crash: {unexplained}"
        assert "reconnected to NATS" in workers.logs()
    finally:
        workers.stop_all()
        server.kill()
