"""asynctask on any broker of :mod:`benchmarks.peers.targets`, run by the main interpreter::

python -m benchmarks.peers.drive_asynctask w1 --broker redis
"""

from __future__ import annotations

import shutil
import socket
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmarks import harness
from benchmarks.apps import asynctask_app
from benchmarks.apps.asynctask_app import app
from benchmarks.driver import NOOP, SLEEP, Driver
from benchmarks.peers import asynctask_workloads
from benchmarks.peers.targets import TARGETS

if TYPE_CHECKING:
    from benchmarks.workloads import Run


class AsynctaskDriver(Driver):
    library = "asynctask"
    has_bulk = True
    forks = True

    def __init__(self, run_id: str, concurrency: int, broker: str, variant: str | None = None) -> None:
        if broker not in TARGETS:
            raise ValueError(f"unknown broker {broker!r}; benchmarks.peers.targets has {', '.join(TARGETS)}")
        super().__init__(run_id, concurrency)
        self.kind = broker
        self.variant = variant
        self.name = f"asynctask-{broker}" + (f"-{variant}" if variant else "")
        self.namespace = f"bench_{run_id}"
        self.url = TARGETS[broker].url(self.namespace)
        self.tasks = {NOOP: asynctask_app.noop, SLEEP: asynctask_app.sleep}

    def extra_workloads(self) -> dict[str, Callable[[Run], Awaitable[dict[str, Any]]]]:
        return {"w4": asynctask_workloads.w4, "w5": asynctask_workloads.w5}

    async def setup(self) -> None:
        app.set_broker(self.url)
        await app.open()

    async def enqueue_one(self, index: int, kind: str) -> None:
        await self.tasks[kind].publish(index)

    async def enqueue_bulk(self, indices: Sequence[int], kind: str) -> None:
        task = self.tasks[kind]
        await app.publish_many([task.spec(i) for i in indices])

    def cli(self, *options: str) -> list[str]:
        """``asynctask worker`` for the benchmark app on this run's broker, with ``options``."""
        exe = shutil.which("asynctask", path=str(Path(sys.executable).parent))
        app_path = "benchmarks.apps.asynctask_app:app"
        return [
            exe or "asynctask",
            "worker",
            app_path,
            "--broker",
            self.url,
            "--log-level",
            "WARNING",
            *options,
        ]

    def worker_command(self, kind: str) -> list[str]:
        settings = self.settings
        observed = []
        if self.variant == "metrics":  # one port per process: PORT, PORT + 1, ...
            observed = [
                "--metrics-port",
                str(free_ports(int(settings["processes"]))),
                "--metrics-host",
                "127.0.0.1",
            ]
        return self.cli(
            "--workers",
            str(settings["processes"]),
            "-c",
            str(settings["concurrency"]),
            "--prefetch",
            str(settings["prefetch"]),
            *observed,
        )

    def worker_env(self) -> dict[str, str]:
        # Read by benchmarks/apps/asynctask_app.py in the worker processes.
        env = super().worker_env()
        if self.variant in ("tracing", "tracing-unset"):
            env["BENCH_TRACING"] = self.variant
        return env

    async def teardown(self) -> None:
        await app.close()
        await TARGETS[self.kind].wipe(self.namespace)


def free_ports(count: int) -> int:
    """The first of ``count`` consecutive free loopback ports."""
    for _ in range(100):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            first: int = sock.getsockname()[1]
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


if __name__ == "__main__":
    harness.main(AsynctaskDriver)
