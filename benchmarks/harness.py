"""The workloads, written once and run by every driver (asynctask's and each peer's).

A driver (``benchmarks/peers/drive_*.py``) says how to publish one job, publish many, start the
worker with the library's own CLI, and wipe its namespace; :func:`main` runs one workload with it
and prints one ``BENCH_RESULT {json}`` line on stdout.

* **W1** (``w1``): bulk-enqueue N no-op jobs where the library has a bulk API (timed, then
  wiped); enqueue N no-op jobs one by one, each awaited (timed); start one worker process; time
  until every handler has run. ``jobs_per_s`` counts from the first handler start to the last one
  (worker start-up excluded, the same for everyone); ``drain_s`` is from spawning the worker to the
  last handler, start-up included.
* **W2** (``w2``): start a worker, wait until it has run a warm-up job, let it idle, then publish
  N jobs 10 ms apart; latency = handler start - publish call (both ``time.time()``, same host).
* **W3** (``w3``): enqueue N jobs of ``await asyncio.sleep(0.05)``; start a worker with
  concurrency C; ``wall_s`` = last handler end - first handler start.

Every handler run is counted by :mod:`benchmarks.apps.record` (a per-run append-only file), not
by the queue: ``lost`` = jobs never run, ``duplicates`` = extra runs.

Standard library only: this module runs in every peer's venv.
"""

from __future__ import annotations

import abc
import argparse
import asyncio
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent
PROJECT = ROOT.parent
RESULT_MARKER = "BENCH_RESULT "
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
POSTGRES_URL = os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
#: A nats-server 2.12.1+ with JetStream; ``python -m benchmarks`` starts one when this is unset.
NATS_URL = os.environ.get("BENCH_NATS_URL", "nats://127.0.0.1:4222")
#: Used to CREATE/DROP a throw-away database per run for peers that keep fixed table names.
POSTGRES_ADMIN_URL = os.environ.get(
    "BENCH_POSTGRES_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)

NOOP = "noop"
SLEEP = "sleep"
SLEEP_SECONDS = 0.05


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def postgres_url_for(database: str) -> str:
    """``POSTGRES_ADMIN_URL`` pointing at another database."""
    base, _, _ = POSTGRES_ADMIN_URL.rpartition("/")
    return f"{base}/{database}"


def venv_bin(exe: str) -> str:
    """An executable next to the running interpreter (the peer's venv, or the main env)."""
    path = Path(sys.executable).parent / exe
    return str(path) if path.exists() else exe


async def redis_call(*args: str | bytes) -> Any:
    """One Redis command over a fresh connection (a stdlib RESP client, so every venv can clean up)."""
    url = urlsplit(REDIS_URL)
    reader, writer = await asyncio.open_connection(url.hostname or "127.0.0.1", url.port or 6379)
    try:
        db = (url.path or "/0").lstrip("/") or "0"
        commands = [("SELECT", db), args] if db != "0" else [args]
        reply: Any = None
        for command in commands:
            parts = [a.encode() if isinstance(a, str) else a for a in command]
            payload = b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)
            writer.write(payload)
            await writer.drain()
            reply = await _read_reply(reader)
        return reply
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def _read_reply(reader: asyncio.StreamReader) -> Any:
    line = (await reader.readline())[:-2]
    kind, rest = line[:1], line[1:]
    if kind in (b"+", b":"):
        return int(rest) if kind == b":" else rest
    if kind == b"-":
        raise RuntimeError(rest.decode(errors="replace"))
    if kind == b"$":
        size = int(rest)
        return None if size < 0 else (await reader.readexactly(size + 2))[:-2]
    if kind == b"*":
        return [await _read_reply(reader) for _ in range(max(int(rest), 0))]
    raise RuntimeError(f"unexpected Redis reply {line!r}")


async def redis_delete_matching(pattern: str) -> int:
    """Delete every key matching ``pattern`` (SCAN + UNLINK); returns how many."""
    cursor, deleted = b"0", 0
    while True:
        cursor, keys = await redis_call("SCAN", cursor, "MATCH", pattern, "COUNT", "1000")
        if keys:
            deleted += await redis_call("UNLINK", *keys)
        if cursor == b"0":
            return deleted


def psql(database: str, sql: str) -> None:
    """Run one statement with ``psql`` (admin work: CREATE/DROP DATABASE)."""
    subprocess.run(
        ["psql", postgres_url_for(database), "-v", "ON_ERROR_STOP=1", "-qc", sql],
        check=True,
        stdout=subprocess.DEVNULL,
        env={**os.environ, "PGOPTIONS": "-c client_min_messages=warning"},
    )


def create_database(name: str) -> str:
    """Create a throw-away database; returns its URL."""
    admin_db = urlsplit(POSTGRES_ADMIN_URL).path.lstrip("/") or "postgres"
    psql(admin_db, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    psql(admin_db, f'CREATE DATABASE "{name}"')
    return postgres_url_for(name)


def drop_database(name: str) -> None:
    admin_db = urlsplit(POSTGRES_ADMIN_URL).path.lstrip("/") or "postgres"
    psql(admin_db, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class Driver(abc.ABC):
    """How the workloads talk to one library. One instance per run; ``run_id`` names its namespace."""

    name: str = "?"
    #: Whether :meth:`enqueue_bulk` is a real bulk API of the library.
    has_bulk: bool = False

    def __init__(self, run_id: str, concurrency: int) -> None:
        self.run_id = run_id
        self.concurrency = concurrency

    async def setup(self) -> None:  # noqa: B027 (optional hook)
        """Create the namespace (key prefix, schema, database) and open clients."""

    @abc.abstractmethod
    async def enqueue_one(self, index: int, kind: str) -> None:
        """Publish one job of ``kind`` (``noop`` or ``sleep``) for ``index``, awaited."""

    async def enqueue_bulk(self, indices: Sequence[int], kind: str) -> None:
        raise NotImplementedError

    @abc.abstractmethod
    def worker_command(self, kind: str) -> list[str]:
        """The CLI command a user would run to start one worker process for ``kind`` jobs."""

    def worker_env(self) -> dict[str, str]:
        """Extra environment for the worker process."""
        return {}

    async def wipe(self) -> None:
        """Remove every job of this run (between the bulk and the one-by-one phases)."""
        await self.teardown()
        await self.setup()

    @abc.abstractmethod
    async def teardown(self) -> None:
        """Remove everything this run created, and close clients."""


class Worker:
    """One worker process started with the library's CLI; stopped with SIGTERM, then SIGKILL."""

    def __init__(self, command: list[str], env: dict[str, str], logfile: Path) -> None:
        self.command = command
        self.logfile = logfile
        self._log = logfile.open("wb")
        full_env = {**os.environ, **env}
        full_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT), full_env.get("PYTHONPATH")]))
        self.started = time.time()
        self.proc = subprocess.Popen(
            command,
            cwd=PROJECT,
            env=full_env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, grace: float = 5.0) -> None:
        # SIGTERM to the main process only, as a supervisor would; it stops its own children.
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        # Children (dramatiq's forks) share the session; make sure none outlives the run.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self._log.close()

    def tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.logfile.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


class Records:
    """Reads the per-run record file as it grows."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self._partial = b""
        #: index -> list of (start, end) per run of that index.
        self.runs: dict[int, list[tuple[float, float | None]]] = {}
        self.total = 0
        self._seen: set[int] = set()

    def poll(self) -> None:
        try:
            with self.path.open("rb") as f:
                f.seek(self._offset)
                data = f.read()
        except FileNotFoundError:
            return
        self._offset += len(data)
        data = self._partial + data
        *lines, self._partial = data.split(b"\n")
        for line in lines:
            parts = line.split()
            index = int(parts[0])
            end = float(parts[2]) if len(parts) > 2 else None
            self.runs.setdefault(index, []).append((float(parts[1]), end))
            if index >= 0:
                self.total += 1
                self._seen.add(index)

    def seen(self, indices: range) -> int:
        """How many of ``indices`` have run at least once (cheap: the driver shares 2 cores)."""
        if len(indices) == 1:
            return int(indices[0] in self.runs)
        return len(self._seen)

    async def wait_for(self, indices: range, worker: Worker, *, timeout: float, stall: float) -> bool:
        """Wait until every index has run; give up on timeout, stall or a dead worker."""
        deadline = time.monotonic() + timeout
        last_progress, last_total = time.monotonic(), -1
        while True:
            self.poll()
            if self.seen(indices) >= len(indices):
                return True
            now = time.monotonic()
            if self.total != last_total:
                last_progress, last_total = now, self.total
            if now > deadline or now - last_progress > stall or not worker.alive():
                return False
            await asyncio.sleep(0.005)

    def tally(self, indices: range, *, complete: bool = True) -> dict[str, int]:
        """Lost and duplicated runs; jobs not run when the wait was cut short are ``unfinished``."""
        missing = sum(1 for i in indices if i not in self.runs)
        duplicates = sum(len(self.runs[i]) - 1 for i in indices if i in self.runs)
        return {
            "lost": missing if complete else 0,
            "unfinished": 0 if complete else missing,
            "duplicates": duplicates,
            "runs": self.total,
        }


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) with linear interpolation."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    pos = (len(ordered) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


class Run:
    """One workload run of one driver."""

    def __init__(self, driver: Driver, args: argparse.Namespace, workdir: Path) -> None:
        self.driver = driver
        self.args = args
        self.workdir = workdir
        self.record_path = workdir / "record.txt"
        self.records = Records(self.record_path)
        self.worker: Worker | None = None
        self.profiler: subprocess.Popen[bytes] | None = None
        self.error: str | None = None

    def start_worker(self, kind: str) -> Worker:
        env = {"BENCH_RECORD": str(self.record_path), **self.driver.worker_env()}
        command = self.driver.worker_command(kind)
        log(f"{self.driver.name}: starting worker: {' '.join(command)}")
        self.worker = Worker(command, env, self.workdir / "worker.log")
        return self.worker

    def _start_profiler(self, pid: int) -> None:
        out = Path(self.args.profile)
        cmd = [
            self.args.py_spy,
            "record",
            "--pid",
            str(pid),
            "--rate",
            "250",
            "--format",
            "speedscope",
            "--output",
            str(out),
            "--nonblocking",
        ]
        self.profiler = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def _stop_profiler(self) -> None:
        if self.profiler is None:
            return
        self.profiler.send_signal(signal.SIGINT)
        try:
            _, err = self.profiler.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.profiler.kill()
            _, err = self.profiler.communicate()
        if self.profiler.returncode not in (0, -signal.SIGINT) and err:
            log(f"py-spy: {err.decode(errors='replace').strip()[-500:]}")
        self.profiler = None

    def stop_worker(self) -> None:
        self._stop_profiler()
        if self.worker is not None:
            self.worker.stop()

    async def enqueue(self, indices: range, kind: str, *, bulk: bool) -> float:
        """Publish ``indices``; returns the elapsed seconds."""
        started = time.perf_counter()
        if bulk:
            chunk = self.args.bulk_chunk
            for lo in range(indices.start, indices.stop, chunk):
                await self.driver.enqueue_bulk(range(lo, min(lo + chunk, indices.stop)), kind)
        else:
            for i in indices:
                await self.driver.enqueue_one(i, kind)
        return time.perf_counter() - started

    async def drain(self, indices: range, timeout: float) -> tuple[bool, float]:
        assert self.worker is not None
        done = await self.records.wait_for(indices, self.worker, timeout=timeout, stall=self.args.stall)
        finished = time.time()
        if done:
            # Runs that arrive a little later are duplicates (a redelivery): give them a chance.
            await asyncio.sleep(self.args.settle)
            self.records.poll()
        else:
            seen = self.records.seen(indices)
            log(
                f"{self.driver.name}: gave up after {seen} of {len(indices)}; "
                f"worker log:\n{self.worker.tail()}"
            )
            self.error = (
                f"cut short after {time.time() - self.worker.started:.0f} s: {seen} of {len(indices)} ran"
            )
        return done, finished

    async def w1(self) -> dict[str, Any]:
        n = self.args.jobs
        jobs = range(n)
        result: dict[str, Any] = {"jobs": n, "bulk_per_s": None}
        if self.driver.has_bulk:
            elapsed = await self.enqueue(jobs, NOOP, bulk=True)
            result["bulk_per_s"] = n / elapsed
            await self.driver.wipe()
        # One by one, each awaited: every job, or as many as fit in the time budget; the rest
        # go in bulk (untimed) when the library has a bulk API, so slow publishers stay bounded.
        budget = self.args.enqueue_budget if self.driver.has_bulk else float("inf")
        started = time.perf_counter()
        count = 0
        for i in jobs:
            await self.driver.enqueue_one(i, NOOP)
            count += 1
            if time.perf_counter() - started > budget:
                break
        result["enqueue_per_s"] = count / (time.perf_counter() - started)
        result["enqueued_one_by_one"] = count
        if count < n:
            await self.enqueue(range(count, n), NOOP, bulk=True)
        worker = self.start_worker(NOOP)
        if self.args.profile:
            # Attach once handlers run, so the profile shows the steady state, not imports.
            while self.records.total == 0 and worker.alive():
                await asyncio.sleep(0.005)
                self.records.poll()
            self._start_profiler(worker.proc.pid)
        done, _ = await self.drain(jobs, timeout=self.args.timeout)
        self.records.poll()
        starts = [s for i in jobs for s, _ in self.records.runs.get(i, [])]
        if len(starts) > 1:
            first, last = min(starts), max(starts)
            result["jobs_per_s"] = (len(starts) - 1) / (last - first) if last > first else None
            result["drain_s"] = last - worker.started
            result["startup_s"] = first - worker.started
        result["complete"] = done
        result.update(self.records.tally(jobs, complete=done))
        return result

    async def w2(self) -> dict[str, Any]:
        n = self.args.jobs
        jobs = range(n)
        worker = self.start_worker(NOOP)
        # Warm-up: index -1 proves the worker consumes; then let it go idle.
        warm = range(-1, 0)
        await self.driver.enqueue_one(-1, NOOP)
        if not await self.records.wait_for(warm, worker, timeout=60, stall=60):
            raise RuntimeError(f"worker never ran the warm-up job:\n{worker.tail()}")
        await asyncio.sleep(self.args.idle)
        published: dict[int, float] = {}
        returned: dict[int, float] = {}
        started = time.perf_counter()
        for i in jobs:
            target = started + i * self.args.interval
            delay = target - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            published[i] = time.time()
            await self.driver.enqueue_one(i, NOOP)
            returned[i] = time.time()
        done, _ = await self.drain(jobs, timeout=self.args.timeout)
        latencies = [
            (self.records.runs[i][0][0] - published[i]) * 1000 for i in jobs if i in self.records.runs
        ]
        result: dict[str, Any] = {"jobs": n, "complete": done, "interval_ms": self.args.interval * 1000}
        if latencies:
            # Where the latency goes: the publish call itself, and from its return to the handler.
            calls = [(returned[i] - published[i]) * 1000 for i in jobs]
            after = [
                (self.records.runs[i][0][0] - returned[i]) * 1000 for i in jobs if i in self.records.runs
            ]
            result.update(
                p50_ms=percentile(latencies, 0.5),
                p99_ms=percentile(latencies, 0.99),
                mean_ms=statistics.fmean(latencies),
                max_ms=max(latencies),
                publish_call_p50_ms=percentile(calls, 0.5),
                after_publish_p50_ms=percentile(after, 0.5),
            )
        result.update(self.records.tally(jobs, complete=done))
        return result

    async def w3(self) -> dict[str, Any]:
        n = self.args.jobs
        jobs = range(n)
        await self.enqueue(jobs, SLEEP, bulk=self.driver.has_bulk)
        worker = self.start_worker(SLEEP)
        done, _ = await self.drain(jobs, timeout=self.args.timeout)
        self.records.poll()
        spans = [(s, e) for i in jobs for s, e in self.records.runs.get(i, []) if e is not None]
        result: dict[str, Any] = {"jobs": n, "concurrency": self.driver.concurrency, "complete": done}
        if spans:
            first = min(s for s, _ in spans)
            last = max(e for _, e in spans)
            busy = sum(e - s for s, e in spans)
            result["wall_s"] = last - first
            result["drain_s"] = last - worker.started
            # Diagnostics for a missed target: how full the slots were, and how late sleeps woke.
            result["avg_running"] = busy / (last - first) if last > first else None
            result["sleep_overrun_ms"] = (busy / len(spans) - SLEEP_SECONDS) * 1000
        result.update(self.records.tally(jobs, complete=done))
        return result


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Run one benchmark workload with one driver.")
    parser.add_argument("workload", choices=["w1", "w2", "w3"])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--run-id", default=f"r{os.getpid()}{int(time.time()) % 100000}")
    parser.add_argument("--broker", default="redis", choices=["redis", "postgres", "nats"])
    parser.add_argument("--interval", type=float, default=0.01, help="W2: seconds between publishes")
    parser.add_argument("--idle", type=float, default=0.5, help="W2: seconds the worker idles first")
    parser.add_argument("--timeout", type=float, default=120.0, help="longest wait for the handlers")
    parser.add_argument(
        "--settle", type=float, default=0.3, help="wait for late duplicates after the last job"
    )
    parser.add_argument("--stall", type=float, default=20.0, help="give up after this long without progress")
    parser.add_argument(
        "--enqueue-budget", type=float, default=5.0, help="W1: seconds of one-by-one publishing at most"
    )
    parser.add_argument("--bulk-chunk", type=int, default=10_000, help="jobs per bulk call")
    parser.add_argument("--profile", help="W1: py-spy speedscope output for the worker")
    parser.add_argument("--py-spy", default="py-spy")
    return parser.parse_args(argv)


async def cleanup(driver: Driver) -> None:
    """Tear down even after a failed setup: at least remove the run's namespace."""
    try:
        await driver.teardown()
    except Exception as exc:
        log(f"{driver.name}: teardown failed ({type(exc).__name__}: {exc}); removing the namespace")
        if isinstance(driver, PeerDriver):
            await PeerDriver.teardown(driver)


def main(factory: Any, argv: Sequence[str] | None = None) -> None:
    """Run the workload named on the command line with ``factory(run_id, concurrency, broker)``."""
    args = parse_args(argv)
    result: dict[str, Any] = {"workload": args.workload, "run_id": args.run_id, "ok": False}

    async def go() -> None:
        driver: Driver = factory(args.run_id, args.concurrency, args.broker)
        result["system"] = driver.name
        with tempfile.TemporaryDirectory(prefix=f"bench-{args.run_id}-") as tmp:
            run = Run(driver, args, Path(tmp))
            try:
                await driver.setup()
                result.update(await getattr(run, args.workload)())
                result["ok"] = bool(result.get("complete"))
                if run.error:
                    result["error"] = run.error
            finally:
                run.stop_worker()
                await cleanup(driver)

    try:
        runner_options: dict[str, Any] = {}
        with contextlib.suppress(ImportError):
            import uvloop

            runner_options["loop_factory"] = uvloop.new_event_loop
        with asyncio.Runner(**runner_options) as runner:
            runner.run(go())
    except Exception as exc:
        traceback.print_exc()
        result["error"] = f"{type(exc).__name__}: {exc}"[:500]
    print(RESULT_MARKER + json.dumps(result), flush=True)


class PeerDriver(Driver):
    """A driver whose app module reads :mod:`benchmarks.apps.settings` from the environment.

    ``namespace`` (unique per run) is the queue name / key prefix on Redis, or the name of a
    throw-away database on Postgres (``database = True``).
    """

    database = False

    def __init__(self, run_id: str, concurrency: int, broker: str = "redis") -> None:
        super().__init__(run_id, concurrency)
        self.namespace = f"bench_{self.name}_{run_id}".lower()
        self.env = {
            "BENCH_NAMESPACE": self.namespace,
            "BENCH_CONCURRENCY": str(concurrency),
            "BENCH_REDIS_URL": REDIS_URL,
            "BENCH_NATS_URL": NATS_URL,
        }
        if self.database:
            self.env["BENCH_PG_URL"] = postgres_url_for(self.namespace)
        # The driver imports the same app module as the worker: same settings.
        os.environ.update(self.env)

    def worker_env(self) -> dict[str, str]:
        return dict(self.env)

    async def setup(self) -> None:
        if self.database:
            create_database(self.namespace)

    async def teardown(self) -> None:
        if self.database:
            drop_database(self.namespace)
        else:
            await redis_delete_matching(f"*{self.namespace}*")
