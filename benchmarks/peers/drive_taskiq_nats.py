"""taskiq + taskiq-nats, JetStream pull consumer (no bulk API)::

python -m benchmarks.peers.drive_taskiq_nats w1

The run's namespace names the stream, its subject (``<namespace>.tasks``) and the durable
consumer; teardown deletes the stream (and with it the consumer).
"""

from __future__ import annotations

import contextlib

from benchmarks import harness
from benchmarks.driver import NOOP, SLEEP, PeerDriver
from benchmarks.services import venv_bin


class TaskiqNatsDriver(PeerDriver):
    name = "taskiq-nats"
    forks = True

    async def setup(self) -> None:
        from benchmarks.apps import taskiq_nats_app

        self.app = taskiq_nats_app
        # startup() creates the stream and the durable consumer before anything is published,
        # so a worker started later reads every message.
        await taskiq_nats_app.broker.startup()
        self.tasks = {NOOP: taskiq_nats_app.noop, SLEEP: taskiq_nats_app.sleep}

    async def enqueue_one(self, index: int, kind: str) -> None:
        # A JetStream publish: awaited until the server has stored it (the PubAck).
        await self.tasks[kind].kiq(index)

    def worker_command(self, kind: str) -> list[str]:
        return [
            venv_bin("taskiq"),
            "worker",
            "benchmarks.apps.taskiq_nats_app:broker",
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
        """Drop every message of the run (the stream and its consumer stay)."""
        await self.app.broker.js.purge_stream(self.namespace)

    async def teardown(self) -> None:
        broker = getattr(self, "app", None) and self.app.broker
        if not broker:
            return
        with contextlib.suppress(Exception):  # not connected if setup failed, or already gone
            await broker.js.delete_stream(self.namespace)
        await broker.shutdown()


if __name__ == "__main__":
    harness.main(TaskiqNatsDriver)
