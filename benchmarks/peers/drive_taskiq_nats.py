"""taskiq + taskiq-nats JetStream (no bulk API): ``python -m benchmarks.peers.drive_taskiq_nats w1``."""

from __future__ import annotations

import contextlib

from benchmarks import harness


class TaskiqNatsDriver(harness.PeerDriver):
    name = "taskiq-nats"

    async def setup(self) -> None:
        from benchmarks.apps import taskiq_nats_app

        self.app = taskiq_nats_app
        # startup() creates the stream and the durable consumer before anything is published.
        await taskiq_nats_app.broker.startup()
        self.tasks = {harness.NOOP: taskiq_nats_app.noop, harness.SLEEP: taskiq_nats_app.sleep}

    async def enqueue_one(self, index: int, kind: str) -> None:
        await self.tasks[kind].kiq(index)

    def worker_command(self, kind: str) -> list[str]:
        return [
            harness.venv_bin("taskiq"),
            "worker",
            "benchmarks.apps.taskiq_nats_app:broker",
            "--workers",
            "1",
            "--max-async-tasks",
            str(self.concurrency),
            "--log-level",
            "WARNING",
        ]

    async def wipe(self) -> None:
        await self.teardown()
        await self.setup()

    async def teardown(self) -> None:
        broker = self.app.broker
        with contextlib.suppress(Exception):  # the stream may already be gone
            await broker.js.delete_stream(self.namespace)
        await broker.shutdown()


if __name__ == "__main__":
    harness.main(TaskiqNatsDriver)
