"""asynctask on any broker of :mod:`benchmarks.peers.targets`, run by the main interpreter::

python -m benchmarks.peers.drive_asynctask w1 --broker redis
"""

from __future__ import annotations

import shutil
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

    def __init__(self, run_id: str, concurrency: int, broker: str) -> None:
        if broker not in TARGETS:
            raise ValueError(f"unknown broker {broker!r}; benchmarks.peers.targets has {', '.join(TARGETS)}")
        super().__init__(run_id, concurrency)
        self.kind = broker
        self.name = f"asynctask-{broker}"
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
        return self.cli(
            "--workers",
            str(settings["processes"]),
            "-c",
            str(settings["concurrency"]),
            "--prefetch",
            str(settings["prefetch"]),
        )

    async def teardown(self) -> None:
        await app.close()
        await TARGETS[self.kind].wipe(self.namespace)


if __name__ == "__main__":
    harness.main(AsynctaskDriver)
