"""A three-node JetStream cluster on loopback loses the leader of the job bucket mid-run.

Two CLI workers run 2,000 jobs on a bucket with three replicas; the node leading the bucket's
stream is SIGKILLed when about a quarter of them are done. The cluster elects a new leader, the
workers (never restarted) reconnect to the surviving nodes, and every job ends ``succeeded``. A
handler may run twice only for a job that was in flight around the kill (at-least-once).
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import anyio
import pytest

from asynctask import JobStatus
from asynctask.brokers.nats import NatsBroker
from tests.nats.procs import Workers, final_statuses, publish
from tests.nats.server import Cluster
from tests.workerprocs import wait_for

pytestmark = pytest.mark.slow

JOBS = 2000
LEASE = 3.0
CONCURRENCY = 25
#: Jobs a worker holds at once: its executors and its prefetch (concurrency // 4 by default).
HELD = CONCURRENCY + CONCURRENCY // 4


async def stream_leader(url: str) -> str:
    broker = NatsBroker(url)
    await broker.open()
    try:
        info = await broker.store.conn.api(f"STREAM.INFO.{broker.layout.stream}")
        assert info["config"]["num_replicas"] == 3
        leader: str = info["cluster"]["leader"]
        return leader
    finally:
        await broker.close()


def test_losing_the_bucket_leader_loses_no_job(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path / "cluster")
    cluster.start()
    url = f"{cluster.url}?prefix=c{uuid.uuid4().hex[:10]}&replicas=3&request_timeout=2"
    project = tmp_path / "project"
    project.mkdir()
    workers = Workers(project, url)
    try:
        # One after the other: the first creates the three-replica bucket. Two workers creating
        # it at once on a fresh cluster could take longer than request_timeout (2 s, short so the
        # leader's loss is noticed soon), and the one that timed out exits at start-up (CI hit
        # it once: "did not answer in time").
        for n in range(2):
            workers.start(
                "-c",
                str(CONCURRENCY),
                "--lease",
                str(LEASE),
                "--maintenance-interval",
                "0.5",
                JOB_SECONDS="0.02",
            )
            wait_for(workers.started, what=f"worker {n} started")
        ids = publish(url, JOBS)
        wait_for(
            lambda: len(workers.ledger.ended()) >= JOBS // 4, timeout=120, what="a quarter of the jobs done"
        )
        leader = anyio.run(stream_leader, url)
        done_before = len(workers.ledger.ended())
        killed_at = time.time()
        cluster.node(leader).kill()
        wait_for(lambda: workers.ledger.ended() == set(range(JOBS)), timeout=180, what="every job done")
        finished_at = time.time()
        assert all(proc.poll() is None for proc in workers.procs), "no worker died or was restarted by hand"

        assert final_statuses(url, ids) == [JobStatus.SUCCEEDED] * JOBS
        starts = workers.ledger.starts()
        first = workers.ledger.first_start()
        twice = sorted(n for n, count in starts.items() if count > 1)
        unexplained = [n for n in twice if not killed_at - 2 * LEASE <= first[n] <= killed_at + 30]
        print(  # the figures, for the report (pytest -s)
            f"\nleader {leader} killed with {done_before}/{JOBS} done; all done "
            f"{finished_at - killed_at:.1f} s later; {sum(starts.values())} runs, "
            f"{len(twice)} job(s) ran twice"
        )
        assert unexplained == [], f"duplicates not explained by the kill: {unexplained}"
        # The leases are short (3 s) and the election takes a few seconds, so a job a worker ran
        # around the kill may have failed to report its outcome within its lease and been rescued
        # by the other worker: the jobs held at the kill (2 x HELD), and, when the election and
        # the completer's back-off outlast a lease, some claimed just after it (CI runs saw 69
        # and 82 against 2 x HELD = 62). Which jobs: `unexplained` above. How many: a failover
        # must not re-run more than a small share of the run.
        assert len(twice) <= JOBS // 10, "a failover re-ran more than a tenth of the jobs"
    finally:
        workers.stop_all()
        cluster.stop()
