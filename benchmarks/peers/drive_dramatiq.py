"""Dramatiq on Redis (threads; no bulk API): ``python -m benchmarks.peers.drive_dramatiq w1``."""

from __future__ import annotations

from benchmarks import harness


class DramatiqDriver(harness.PeerDriver):
    name = "dramatiq"

    async def setup(self) -> None:
        from benchmarks.apps import dramatiq_app

        self.app = dramatiq_app
        self.actors = {harness.NOOP: dramatiq_app.noop, harness.SLEEP: dramatiq_app.sleep}

    async def enqueue_one(self, index: int, kind: str) -> None:
        # Dramatiq's client is synchronous: send() returns once Redis has the message.
        self.actors[kind].send(index)

    def worker_command(self, kind: str) -> list[str]:
        return [
            harness.venv_bin("dramatiq"),
            "benchmarks.apps.dramatiq_app",
            "--processes",
            "1",
            "--threads",
            str(self.concurrency),
        ]

    def worker_env(self) -> dict[str, str]:
        # Dramatiq's Redis consumer backs off up to the worker timeout (1 s by default) when its
        # queue is empty; 100 ms is the documented knob set for an idle-latency comparison.
        return {**super().worker_env(), "dramatiq_worker_timeout": "100"}


if __name__ == "__main__":
    harness.main(DramatiqDriver)
