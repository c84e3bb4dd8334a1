"""SAQ (Redis; no bulk API): ``python -m benchmarks.peers.drive_saq w1`` in the saq venv."""

from __future__ import annotations

from typing import Any

from benchmarks import harness
from benchmarks.driver import PeerDriver
from benchmarks.services import venv_bin


class SaqDriver(PeerDriver):
    name = "saq"
    forks = True

    async def setup(self) -> None:
        from benchmarks.apps.saq_app import make_queue

        self.queue: Any = make_queue()
        await self.queue.connect()

    async def enqueue_one(self, index: int, kind: str) -> None:
        await self.queue.enqueue(kind, index=index)

    def worker_command(self, kind: str) -> list[str]:
        return [venv_bin("saq"), "benchmarks.apps.saq_app.settings", "--workers", str(self.processes)]

    async def teardown(self) -> None:
        await self.queue.disconnect()
        await super().teardown()


if __name__ == "__main__":
    harness.main(SaqDriver)
