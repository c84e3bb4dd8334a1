"""arq (Redis; no bulk API): ``python -m benchmarks.peers.drive_arq w1`` in the arq venv."""

from __future__ import annotations

from typing import Any

from benchmarks import harness
from benchmarks.driver import PeerDriver
from benchmarks.services import venv_bin


class ArqDriver(PeerDriver):
    name = "arq"

    async def setup(self) -> None:
        from arq import create_pool

        from benchmarks.apps.arq_app import WorkerSettings

        self.pool: Any = await create_pool(WorkerSettings.redis_settings, default_queue_name=self.namespace)

    async def enqueue_one(self, index: int, kind: str) -> None:
        # A job id under the run's namespace lets teardown find the result keys arq keeps.
        await self.pool.enqueue_job(kind, index, _job_id=f"{self.namespace}:{index}")

    def worker_command(self, kind: str) -> list[str]:
        return [
            venv_bin("arq"),
            "benchmarks.apps.arq_app.WorkerSettings",
            "--custom-log-dict",
            "benchmarks.apps.settings.LOG_CONFIG",
        ]

    async def teardown(self) -> None:
        await self.pool.aclose()
        await super().teardown()


if __name__ == "__main__":
    harness.main(ArqDriver)
