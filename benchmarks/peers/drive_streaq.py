"""streaQ (Redis streams; bulk ``enqueue_many``): ``python -m benchmarks.peers.drive_streaq w1``."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from contextlib import AsyncExitStack
from typing import Any

from benchmarks import harness, services
from benchmarks.driver import NOOP, SLEEP, PeerDriver
from benchmarks.services import venv_bin


class StreaqDriver(PeerDriver):
    name = "streaq"
    forks = True
    has_bulk = True

    async def setup(self) -> None:
        from benchmarks.apps import streaq_app

        self.stack = AsyncExitStack()
        self.worker: Any = await self.stack.enter_async_context(streaq_app.worker)
        self.tasks = {NOOP: streaq_app.noop, SLEEP: streaq_app.sleep}

    async def enqueue_one(self, index: int, kind: str) -> None:
        await self.tasks[kind].enqueue(index)

    async def enqueue_bulk(self, indices: Sequence[int], kind: str) -> None:
        task = self.tasks[kind]
        await self.worker.enqueue_many([task.enqueue(i) for i in indices])

    def worker_command(self, kind: str) -> list[str]:
        return [
            venv_bin("streaq"),
            "run",
            "--workers",
            str(self.processes),
            "benchmarks.apps.streaq_app:worker",
        ]

    async def teardown(self) -> None:
        await self.stack.aclose()
        await super().teardown()
        # streaQ loads its Lua as a server-wide function library; leave the server as we found it.
        with contextlib.suppress(RuntimeError):
            await services.redis_call("FUNCTION", "DELETE", "streaq")


if __name__ == "__main__":
    harness.main(StreaqDriver)
