"""Running ``asynctask`` CLI workers with a monitoring port, for the tests of this package."""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

from asynctask import App
from tests.redis.server import free_port

APP_MODULE = textwrap.dedent(
    """
    import time
    from asynctask import App, Fixed, JobCtx

    app = App(retry=Fixed(0.01))

    @app.task(queue="work")
    async def ok(ctx: JobCtx, n: int) -> int:
        return n

    @app.task(queue="work", max_retries=0)
    async def broken(ctx: JobCtx, n: int) -> None:
        raise RuntimeError(f"broken {n}")

    @app.task(queue="work", max_retries=2)
    async def flaky(ctx: JobCtx, n: int) -> None:
        if ctx.attempt == 1:
            raise RuntimeError("the first attempt fails")

    @app.task(queue="work")
    async def block(ctx: JobCtx, seconds: float) -> None:
        time.sleep(seconds)  # blocks the event loop: what /healthz must notice

    @app.task(queue="parked")
    async def parked(ctx: JobCtx) -> None:
        pass
    """
)


def write_app(directory: Path) -> App:
    """Write the app module into ``directory`` and import it under a unique name."""
    path = directory / "obsapp.py"
    path.write_text(APP_MODULE)
    spec = importlib.util.spec_from_file_location(f"obsapp_{uuid.uuid4().hex}", path)
    assert spec is not None and spec.loader is not None
    module: ModuleType = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    app: App = module.app
    return app


def run_cli(directory: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "ASYNCTASK_BROKER_URL"}
    return subprocess.run(
        [sys.executable, "-m", "asynctask", *args],
        cwd=directory,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


class CliWorker:
    """``asynctask worker obsapp:app`` with a monitoring port on 127.0.0.1."""

    def __init__(self, directory: Path, broker: str, *args: str, ports: int = 1) -> None:
        self.port = free_ports(ports)
        self.log = directory / f"worker-{self.port}.log"
        env = {k: v for k, v in os.environ.items() if k != "ASYNCTASK_BROKER_URL"}
        command = [sys.executable, "-m", "asynctask", "worker", "obsapp:app", "--broker", broker]
        command += ["--metrics-port", str(self.port), "--metrics-host", "127.0.0.1", *args]
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                command, cwd=directory, env=env, stdout=out, stderr=subprocess.STDOUT
            )

    def at(self, port: int) -> CliWorker:
        """The same worker process(es), asked on ``port`` (another process under ``--workers``)."""
        other = copy.copy(self)
        other.port = port
        return other

    def get(self, path: str) -> tuple[int, bytes]:
        """``(status, body)`` of a GET on the monitoring port; status 0 while nothing listens."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=10) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()
        except OSError:
            assert self.process.poll() is None, f"the worker exited:\n{self.output()}"
            return 0, b""

    def probe(self, path: str) -> tuple[int, str]:
        status, body = self.get(path)
        return status, json.loads(body)["reason"] if body else ""

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def free_ports(count: int) -> int:
    """The first of ``count`` consecutive free loopback ports."""
    for _ in range(100):
        first = free_port()
        if all(_free(first + i) for i in range(1, count)):
            return first
    raise RuntimeError(f"no {count} consecutive free ports")


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


@contextmanager
def cli_worker(directory: Path, broker: str, *args: str, ports: int = 1) -> Iterator[CliWorker]:
    worker = CliWorker(directory, broker, *args, ports=ports)
    try:
        yield worker
    finally:
        worker.stop()
