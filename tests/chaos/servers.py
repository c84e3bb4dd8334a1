"""Private broker servers the chaos suite may crash and restart: a PostgreSQL cluster and a Redis.

The shared servers (5432, 6379) are never touched. Each private server gets a free loopback port
and a temporary directory, and is stopped by its PID (``stop``, always called from a fixture's
teardown). PostgreSQL refuses to run as root, so when the tests run as root the cluster is
created and run as the ``postgres`` user (``runuser``) in a directory it owns.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from tests.redis.server import RedisServer, free_port

__all__ = ["PostgresServer", "RedisServer", "ready"]


def ready(port: int, timeout: float) -> None:
    """Poll until ``127.0.0.1:port`` accepts a TCP connection (bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def _bin() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        pytest.skip("no PostgreSQL server binaries in /usr/lib/postgresql/*/bin")
    return Path(found[-1]).parent


class PostgresServer:
    """One PostgreSQL cluster on a loopback port, trust auth, restartable on the same data."""

    def __init__(self) -> None:
        self.bin = _bin()
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="asynctask-chaos-pg-"))
        self.data = self.dir / "data"
        self.user: str | None = None
        if os.geteuid() == 0:
            self.user = "postgres"
            entry = pwd.getpwnam(self.user)
            os.chown(self.dir, entry.pw_uid, entry.pw_gid)

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *command: str, timeout: float = 60.0) -> None:
        full = [*(["runuser", "-u", self.user, "--"] if self.user else []), *command]
        done = subprocess.run(full, capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed: {done.stdout}{done.stderr}")

    def init(self) -> None:
        self._run(
            str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust", "--no-sync"
        )

    def start(self, timeout: float = 30.0) -> None:
        # fsync off: a killed server keeps its data in the OS cache, and the machine never
        # crashes in a test; synchronous_commit stays on, so a commit is in the WAL when acked.
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(
            str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.dir / "log"), "-o", options,
            "-w", "-t", str(int(timeout)), "start",
        )  # fmt: skip
        ready(self.port, timeout)

    def pid(self) -> int | None:
        with contextlib.suppress(FileNotFoundError, ValueError):
            return int((self.data / "postmaster.pid").read_text().split()[0])
        return None

    def stop_immediate(self) -> None:
        """``pg_ctl stop -m immediate``: every process quits at once, no checkpoint; the next
        start replays the WAL, as after a crash."""
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def stop(self) -> None:
        """Teardown: SIGQUIT (immediate shutdown) to the postmaster by its PID, then remove."""
        pid = self.pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGQUIT)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.05)
            else:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.dir, ignore_errors=True)
