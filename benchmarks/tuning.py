"""Every system's worker settings for a total concurrency C: the one table, with its sources.

Each peer runs with what its own documentation gives for throughput (issue #18). A worker fleet
always holds C jobs in flight in total: a library whose CLI forks worker processes runs one per
core (the documented way to use the cores; :data:`CPUS`) and splits C between them. The driver
turns these settings into CLI flags or environment, the app module reads them back
(``benchmarks.apps.settings.SETTINGS``), and every result records the settings it ran with, so
``results.md`` prints them beside each system. ``benchmarks/README.md`` has the same table with
links.

Standard library only: imported by every driver and app module, in every peer's venv.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["CPUS", "POSTGRES_POOL_CAP", "TUNING", "Tuning", "settings_for"]

#: Worker processes for CLIs that fork one per core (``$BENCH_WORKER_PROCESSES`` overrides it, e.g.
#: 1 to compare single processes; every result records the settings it ran with).
CPUS = int(os.environ.get("BENCH_WORKER_PROCESSES") or os.cpu_count() or 1)
#: Largest client pool a peer may open: the server's ``max_connections`` (100 by default) is
#: shared with the driver and, on a busy machine, with other users.
POSTGRES_POOL_CAP = 50

Settings = dict[str, Any]


@dataclass(frozen=True)
class Tuning:
    """How one library is set up for a total concurrency C."""

    #: C -> settings; ``processes`` is always present.
    settings: Callable[[int], Settings]
    #: The settings as formulas of C, for the report.
    summary: str
    #: Where the documentation says so (short; benchmarks/README.md has the links).
    source: str


def _split(c: int, processes: int) -> int:
    """C shared by ``processes`` processes (at least one slot each)."""
    return max(1, c // processes)


def _asynctask(c: int) -> Settings:
    per = _split(c, CPUS)
    # The README's setting for many short jobs (Workers, "Prefetch"): a prefetch of the
    # concurrency, so a batch of handlers ending together is followed at once by as many.
    return {"processes": CPUS, "concurrency": per, "prefetch": per}


def _dramatiq(c: int) -> Settings:
    return {"processes": CPUS, "threads": _split(c, CPUS), "worker_timeout_ms": 100}


def _taskiq(c: int) -> Settings:
    per = _split(c, CPUS)
    return {"processes": CPUS, "max_async_tasks": per, "max_prefetch": per}


def _taskiq_nats(c: int) -> Settings:
    """taskiq's worker settings (as on Redis) plus taskiq-nats's JetStream fetch.

    ``pull_consume_batch`` (taskiq-nats: "maximum number of messages that can be fetched each
    time") has no documented value; its default, 1, costs a round trip per message. It is set to
    the per-process ``--max-prefetch``, the number of messages the worker is told to hold ahead:
    W1 at C = 100 ran 1.6-2x faster than with 1 (3 runs each, 2,000 jobs, load 4.5-5.4).
    ``pull_consume_timeout`` must then be set: with the default (none) a fetch on an idle stream
    waits for a whole batch, so a trickle of jobs never runs (W2: 0 of 50 in 23 s). With 1 s (or
    0.1 s) W2 is bimodal run to run: p50 about 1 ms, or 0.6-0.8 s when the jobs wait in a
    fetch that is filling its batch; with a batch of 1, about 1 ms every time. The price of
    the throughput setting, reported as measured.
    """
    settings = _taskiq(c)
    return {**settings, "pull_consume_batch": settings["max_prefetch"], "pull_consume_timeout": 1.0}


def _saq(c: int) -> Settings:
    return {"processes": CPUS, "concurrency": _split(c, CPUS)}


def _streaq(c: int) -> Settings:
    per = _split(c, CPUS)
    return {"processes": CPUS, "concurrency": per, "prefetch": per}


def _arq(c: int) -> Settings:
    return {"processes": 1, "max_jobs": c, "poll_delay_s": 0.01, "queue_read_limit": max(5 * c, 100)}


def _pgqueuer(c: int) -> Settings:
    return {
        "processes": 1,
        "batch_size": max(1, min(c // 2, 100)),
        "max_concurrent_tasks": c,
        "autovac": True,
    }


def _procrastinate(c: int) -> Settings:
    return {"processes": 1, "concurrency": c, "pool_max_size": min(c + 1, POSTGRES_POOL_CAP)}


#: library -> tuning. A new peer adds one entry (and its line in ``benchmarks.systems``).
TUNING: dict[str, Tuning] = {
    "asynctask": Tuning(
        _asynctask,
        "`asynctask worker --workers <cores> -c C/cores --prefetch C/cores` (per process; the "
        "prefetch the README gives for many short jobs, the default being a quarter of -c)",
        "README, Workers (prefetch for short jobs), Command line (`--workers N`) and Deployment "
        "(more worker processes)",
    ),
    "dramatiq": Tuning(
        _dramatiq,
        "`--processes <cores> --threads C/cores`, hiredis, `dramatiq_worker_timeout=100` ms, "
        "queue prefetch 2 x threads (default)",
        "Dramatiq guide, Workers; reference, Environment Variables; installation (hiredis)",
    ),
    "taskiq": Tuning(
        _taskiq,
        "`--workers <cores> --max-async-tasks C/cores --max-prefetch C/cores`",
        "taskiq CLI guide (worker parameters); streaQ's benchmark command for the prefetch value",
    ),
    "taskiq-nats": Tuning(
        _taskiq_nats,
        "`--workers <cores> --max-async-tasks C/cores --max-prefetch C/cores` (as taskiq on Redis); "
        "`PullBasedJetStreamBroker(pull_consume_batch=C/cores, pull_consume_timeout=1.0)`",
        "taskiq CLI guide (worker parameters); taskiq-nats README (PullBasedJetStreamBroker: "
        "`pull_consume_batch`, `pull_consume_timeout`; no values given: the batch is the prefetch)",
    ),
    "saq": Tuning(
        _saq,
        "`saq --workers <cores>`, `concurrency` C/cores, hiredis",
        "SAQ docs, Comparison (multiple workers to use more cores) and Workers (`--workers`)",
    ),
    "streaq": Tuning(
        _streaq,
        "`streaq run --workers <cores>`, `concurrency` C/cores, `prefetch` = concurrency (default)",
        "streaQ docs, Worker (concurrency, prefetch) and CLI (`--workers`)",
    ),
    "arq": Tuning(
        _arq,
        "1 process (no multi-process CLI), `max_jobs` C, `poll_delay` 0.01 s (default 0.5), "
        "`queue_read_limit` max(5C, 100) (default)",
        "arq `Worker` reference (max_jobs, poll_delay, queue_read_limit); arq issue #210",
    ),
    "pgqueuer": Tuning(
        _pgqueuer,
        "1 process (`pgq run`), `--batch-size min(C/2, 100) --max-concurrent-tasks C`, `pgq autovac`; "
        "durable tables (default)",
        "PgQueuer docs, Performance Tuning (batch size, autovacuum) and CLI reference",
    ),
    "procrastinate": Tuning(
        _procrastinate,
        f"1 process, `--concurrency C`, pool `max_size` min(C + 1, {POSTGRES_POOL_CAP}), LISTEN/NOTIFY on",
        "procrastinate how-to, Concurrency; discussions, Mind the size of your PostgreSQL pool",
    ),
}


def settings_for(library: str, concurrency: int) -> Settings:
    """The settings ``library`` runs with at total concurrency ``concurrency``."""
    try:
        tuning = TUNING[library]
    except KeyError:
        raise KeyError(f"no tuning for {library!r}: add it to benchmarks.tuning.TUNING") from None
    return tuning.settings(concurrency)
