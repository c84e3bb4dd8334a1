"""procrastinate (Postgres; bulk ``batch_defer_async``), in a throw-away database per run."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from benchmarks import harness
from benchmarks.driver import NOOP, SLEEP, PeerDriver
from benchmarks.services import venv_bin


class ProcrastinateDriver(PeerDriver):
    name = "procrastinate"
    database = True
    has_bulk = True

    async def setup(self) -> None:
        await super().setup()
        from benchmarks.apps import procrastinate_app

        self.app: Any = procrastinate_app.app
        await self.app.open_async()
        await self.app.schema_manager.apply_schema_async()
        self.tasks = {NOOP: procrastinate_app.noop, SLEEP: procrastinate_app.sleep}

    async def enqueue_one(self, index: int, kind: str) -> None:
        await self.tasks[kind].defer_async(index=index)

    async def enqueue_bulk(self, indices: Sequence[int], kind: str) -> None:
        await self.tasks[kind].batch_defer_async(*({"index": i} for i in indices))

    def worker_command(self, kind: str) -> list[str]:
        return [
            venv_bin("procrastinate"),
            "--app",
            "benchmarks.apps.procrastinate_app.app",
            "--log-level",
            "warning",
            "worker",
            "--concurrency",
            str(self.settings["concurrency"]),
        ]

    async def teardown(self) -> None:
        await self.app.close_async()
        await super().teardown()


if __name__ == "__main__":
    harness.main(ProcrastinateDriver)
