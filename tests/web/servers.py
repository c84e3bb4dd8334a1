"""Real processes for the browser tests: ``asynctask web`` and ``asynctask worker`` on one broker."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
APP = "tests.web.browser_app:app"
_LISTENING = re.compile(r"Uvicorn running on (http://127\.0\.0\.1:\d+)")


class Process:
    """A CLI subprocess whose output is read as it comes (a full pipe would stall it)."""

    def __init__(self, *args: str) -> None:
        env = {k: v for k, v in os.environ.items() if k != "ASYNCTASK_BROKER_URL"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "asynctask", *args],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self.url: str | None = None
        self._started = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            found = _LISTENING.search(line)
            if found:
                self.url = found.group(1)
                self._started.set()
        self._started.set()  # exited: wake the waiter

    def wait_listening(self, timeout: float = 30.0) -> str:
        """The URL uvicorn reports once its socket is bound (``--port 0`` picks a free port)."""
        self._started.wait(timeout)
        if self.url is None:
            raise RuntimeError("asynctask web did not start:\n" + "".join(self.lines))
        return self.url

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it does not exit within 15 s."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(timeout=5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@contextmanager
def dashboard(broker: str, *options: str) -> Iterator[str]:
    """``asynctask web`` on a free port of 127.0.0.1; yields its base URL."""
    server = Process("web", APP, "--port", "0", "--broker", broker, *options)
    try:
        yield server.wait_listening()
    finally:
        server.stop()


@contextmanager
def worker(broker: str) -> Iterator[Process]:
    """``asynctask worker`` on ``broker`` until the block ends."""
    proc = Process(
        "worker", APP, "--broker", broker, "-c", "4", "--poll-interval", "0.2", "--log-level", "WARNING"
    )
    try:
        yield proc
    finally:
        proc.stop()
