"""Real ``asynctask worker`` processes for the tests that need them (crash safety, flow control
across processes, NATS clusters and restarts).

A :class:`WorkerProcesses` starts ``python -m asynctask worker APP`` from a project directory
holding the app module, with the broker URL and the job log (``$JOB_LOG``, which the test apps
append a line to per event) in the environment. Each process keeps its stderr in
``worker<N>.err``; :meth:`~WorkerProcesses.stop_all` stops them all (SIGTERM, SIGKILL after a
grace period). The chaos harness (``tests/chaos/harness.py``) has its own richer fleet (slots,
kill records) but shares :func:`wait_for`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO

__all__ = ["WorkerProcesses", "wait_for"]


def wait_for(
    predicate: Callable[[], object], timeout: float = 60.0, what: str = "condition", interval: float = 0.02
) -> None:
    """Poll ``predicate`` (blocking) until it holds; ``TimeoutError`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not met within {timeout} s")
        time.sleep(interval)


class WorkerProcesses:
    """``asynctask worker APP *options`` processes on broker ``url``, run from ``project``."""

    def __init__(
        self,
        project: Path,
        app: str,
        url: str,
        *,
        options: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.project, self.app, self.url = project, app, url
        self.options = list(options)
        #: The job log the test apps write to (``$JOB_LOG``).
        self.log = project / "jobs.log"
        self._env = dict(env or {})
        self.procs: list[subprocess.Popen[bytes]] = []
        self._files: list[IO[bytes]] = []

    def env(self, **extra: str) -> dict[str, str]:
        """The environment of a worker (or CLI command): the broker URL and the job log set."""
        return {
            **os.environ,
            "ASYNCTASK_BROKER_URL": self.url,
            "JOB_LOG": str(self.log),
            **self._env,
            **extra,
        }

    def start(self, *args: str, **env: str) -> subprocess.Popen[bytes]:
        """One more worker, with ``args`` after the fleet's options and ``env`` added."""
        err = (self.project / f"worker{len(self.procs)}.err").open("wb")
        self._files.append(err)
        command = [sys.executable, "-m", "asynctask", "worker", self.app, *self.options, *args]
        proc = subprocess.Popen(
            command, cwd=self.project, env=self.env(**env), stdout=subprocess.DEVNULL, stderr=err
        )
        self.procs.append(proc)
        return proc

    def cli(self, *args: str) -> str:
        """``python -m asynctask ARGS`` in the workers' environment; its stdout (it must succeed)."""
        done = subprocess.run(
            [sys.executable, "-m", "asynctask", *args],
            cwd=self.project,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    def lines(self) -> list[str]:
        """The job log's complete lines so far: a read can meet a line a worker is still
        appending, and what follows the last newline is left out until it is whole."""
        return self.log.read_text().split("\n")[:-1] if self.log.exists() else []

    def logs(self) -> str:
        """Every worker's stderr so far."""
        return "\n".join(p.read_text() for p in sorted(self.project.glob("worker*.err")))

    def started(self) -> bool:
        """Whether every worker started so far is up (it logged ``worker_started``)."""
        logs = [p.read_text() for p in sorted(self.project.glob("worker*.err"))]
        return len(logs) == len(self.procs) and all("action=worker_started" in log for log in logs)

    def stop_all(self, timeout: float = 30.0) -> None:
        """SIGTERM every worker still running, then SIGKILL those not gone after ``timeout`` s."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for file in self._files:
            file.close()
        self._files.clear()
