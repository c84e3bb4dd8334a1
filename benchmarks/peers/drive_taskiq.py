"""taskiq + taskiq-redis streams (no bulk API): ``python -m benchmarks.peers.drive_taskiq w1``."""

from __future__ import annotations

from benchmarks import harness
from benchmarks.driver import NOOP, SLEEP, PeerDriver
from benchmarks.services import venv_bin


class TaskiqDriver(PeerDriver):
    name = "taskiq"
    forks = True

    async def setup(self) -> None:
        from benchmarks.apps import taskiq_app

        self.app = taskiq_app
        # startup() creates the consumer group before anything is published, so a worker
        # started later reads every message.
        await taskiq_app.broker.startup()
        self.tasks = {NOOP: taskiq_app.noop, SLEEP: taskiq_app.sleep}

    async def enqueue_one(self, index: int, kind: str) -> None:
        await self.tasks[kind].kiq(index)

    def worker_command(self, kind: str) -> list[str]:
        return [
            venv_bin("taskiq"),
            "worker",
            "benchmarks.apps.taskiq_app:broker",
            "--workers",
            str(self.processes),
            "--max-async-tasks",
            str(self.settings["max_async_tasks"]),
            "--max-prefetch",
            str(self.settings["max_prefetch"]),
            "--log-level",
            "WARNING",
        ]

    async def wipe(self) -> None:
        await self.teardown()
        await self.setup()

    async def teardown(self) -> None:
        await self.app.broker.shutdown()
        await super().teardown()


if __name__ == "__main__":
    harness.main(TaskiqDriver)
