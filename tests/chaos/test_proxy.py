"""Broken connections: CLI workers reach the broker through :class:`~tests.proxy.Proxy`,
which resets every connection (TCP RST) twice mid-run, or stalls every connection (no byte
forwarded, nothing closed) once.

Each worker must be back at work after the fault: recovery is, per fault, the time until every
worker has started a job again (the ledger's first ``start`` of each pid after the fault). After a
stall that is bounded by the worker's ``broker_timeout`` (each round trip's deadline, after which
the call is abandoned and retried on another connection) plus a lease and a maintenance tick (for
a claim whose reply the stall swallowed). Nothing may be lost, and no job may run twice: nothing
killed a worker.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

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
from tests.proxy import Proxy

#: The long version runs for minutes; the default per-test timeout (120 s) fits the short one.
pytestmark = pytest.mark.timeout(1200 if long_run() else 120)

JOBS = 1_000
WORKERS = 2
CONCURRENCY = 8
#: The unbroken run lasts about this long (short version, long version).
SECONDS = 5.0
LONG_SECONDS = 60.0
BROKER_TIMEOUT = 2.0
MAINTENANCE = 0.5
#: Leases: short where connections are reset (a claim whose reply the reset swallowed waits for
#: it), longer than a stall's recovery where they stall: the heartbeats stall too, and a lease
#: that lapses meanwhile hands running jobs to another worker, which rightly runs them again.
LEASE = {"reset": 4.0, "stall": 10.0, "stall-sigterm": 10.0}
#: Longest recovery accepted after a stall: the abandoned round trip, replacing its connection,
#: one more round trip, and slack for a loaded two-core machine. (The first claims after the
#: fault take new jobs; none waits for a lease.)
STALL_DEADLINE = 3 * BROKER_TIMEOUT + 5.5
SHUTDOWN_GRACE = 5.0
#: A worker stops within its shutdown grace plus a broker round trip's deadline plus a second,
#: whatever the broker does (asynctask/runtime/worker.py), plus slack for a loaded machine.
STOP_DEADLINE = SHUTDOWN_GRACE + BROKER_TIMEOUT + 1.0 + 2.0


def through(url: str, proxy: Proxy) -> str:
    """``url`` with its host and port replaced by the proxy's."""
    parts = urlsplit(url)
    user = parts.netloc.rpartition("@")[0]
    netloc = f"{user}@127.0.0.1:{proxy.port}" if user else f"127.0.0.1:{proxy.port}"
    return urlunsplit(parts._replace(netloc=netloc))


@pytest.fixture
def proxy(shared_url: str) -> Iterator[Proxy]:
    parts = urlsplit(shared_url)
    assert parts.hostname is not None and parts.port is not None, shared_url
    started = Proxy(parts.hostname, parts.port).start()
    try:
        yield started
    finally:
        started.close()


def run_through_proxy(
    fault: str, url: str, proxy: Proxy, tmp_path: Path, report: Callable[[Figures], None], broker: str
) -> None:
    # mongoeco (the tests' MongoDB, a server in Python) runs some tens of jobs a second; the
    # SIGTERM case needs only a run to interrupt.
    share = 0.2 if fault == "stall-sigterm" else 1.0
    jobs = int((150 if broker == "mongo" else JOBS) * (10 if long_run() else 1) * share)
    ledger = Ledger(tmp_path / "ledger")
    started = time.time()
    published = publish(url, "work", range(jobs), [f"job-{n}" for n in range(jobs)])
    options = [
        "-c",
        str(CONCURRENCY),
        "--lease",
        str(LEASE[fault]),
        "--maintenance-interval",
        str(MAINTENANCE),
    ]
    options += ["--broker-timeout", str(BROKER_TIMEOUT), "--poll-interval", "0.5"]
    options += ["--shutdown-grace", str(SHUTDOWN_GRACE)]
    seconds = (LONG_SECONDS if long_run() else SECONDS) * share
    env = {"CHAOS_JOB_SECONDS": f"{seconds * WORKERS * CONCURRENCY / jobs:.4f}"}
    workers = Workers(through(url, proxy), tmp_path, ledger.path, options, env)
    recoveries: list[float] = []
    links = 0
    try:
        workers.start_all(WORKERS)
        if fault == "reset":
            for fraction in (0.2, 0.5):
                progress(url, fraction, jobs, workers)
                moment = time.time()
                links += proxy.reset()
                recoveries.append(recovered(ledger, workers, moment, timeout=30))
        elif fault == "stall-sigterm":
            progress(url, 0.2, jobs, workers)
            links += proxy.stall()
            slots = sorted(workers.running)
            recoveries.append(workers.terminate(STOP_DEADLINE))
            proxy.reset()
            for slot in slots:  # new workers finish the jobs
                workers.start(slot)
        else:
            progress(url, 0.2, jobs, workers)
            moment = time.time()
            links += proxy.stall()
            recoveries.append(recovered(ledger, workers, moment, timeout=STALL_DEADLINE))
            # The stalled connections stay half-open for ever; a server may keep a transaction (and
            # its row locks) open on them until its keepalive fires. Drop them now, as that would.
            proxy.reset()
        wait_finished(url, jobs, timeout=60 + seconds, workers=workers)
    except BaseException:
        # Already failed (the expected failure of a case marked xfail, too): no need to give
        # workers stuck on a stalled connection the full stop deadline as well.
        workers.stop_all(timeout=2.0)
        raise
    workers.stop_all()
    assert links > 0, "the fault hit no connection"
    judge(
        test=f"proxy-{fault}",
        broker=broker,
        url=url,
        published=published,
        ledger=ledger,
        workers=workers,
        recovery=max(recoveries),
        started=started,
        report=report,
        extra={
            "faults": len(recoveries),
            "connections_hit": links,
            "broker_timeout": BROKER_TIMEOUT,
            "sigterms": len(workers.stops),
            "lease": LEASE[fault],
        },
    )
    if fault == "stall":
        assert max(recoveries) <= STALL_DEADLINE


@pytest.mark.parametrize("shared_url", ["postgres", "redis", "mongo", "nats"], indirect=True)
def test_workers_recover_from_connection_resets(
    shared_url: str,
    proxy: Proxy,
    tmp_path: Path,
    report: Callable[[Figures], None],
    broker_name: str,
) -> None:
    run_through_proxy("reset", shared_url, proxy, tmp_path, report, broker_name)


@pytest.mark.parametrize("shared_url", ["postgres", "redis"], indirect=True)
def test_workers_abandon_stalled_connections_within_the_broker_timeout(
    shared_url: str,
    proxy: Proxy,
    tmp_path: Path,
    report: Callable[[Figures], None],
    broker_name: str,
) -> None:
    run_through_proxy("stall", shared_url, proxy, tmp_path, report, broker_name)


@pytest.mark.parametrize("shared_url", ["postgres", "redis"], indirect=True)
def test_sigterm_stops_workers_on_a_stalled_connection_within_grace_and_broker_timeout(
    shared_url: str,
    proxy: Proxy,
    tmp_path: Path,
    report: Callable[[Figures], None],
    broker_name: str,
) -> None:
    """Recovery here is the longest time a worker took to exit after SIGTERM; the judge fails
    any worker that had to be SIGKILLed after STOP_DEADLINE."""
    run_through_proxy("stall-sigterm", shared_url, proxy, tmp_path, report, broker_name)
