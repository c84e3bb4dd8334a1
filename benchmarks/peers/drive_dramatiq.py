"""Dramatiq on Redis (processes x threads; no bulk API): ``python -m benchmarks.peers.drive_dramatiq w1``."""

from __future__ import annotations

from benchmarks import harness
from benchmarks.driver import NOOP, SLEEP, PeerDriver
from benchmarks.services import venv_bin


class DramatiqDriver(PeerDriver):
    name = "dramatiq"
    forks = True

    async def setup(self) -> None:
        from benchmarks.apps import dramatiq_app

        self.app = dramatiq_app
        self.actors = {NOOP: dramatiq_app.noop, SLEEP: dramatiq_app.sleep}

    async def enqueue_one(self, index: int, kind: str) -> None:
        # Dramatiq's client is synchronous: send() returns once Redis has the message.
        self.actors[kind].send(index)

    def worker_command(self, kind: str) -> list[str]:
        return [
            venv_bin("dramatiq"),
            "benchmarks.apps.dramatiq_app",
            "--processes",
            str(self.processes),
            "--threads",
            str(self.settings["threads"]),
        ]

    def worker_env(self) -> dict[str, str]:
        # Dramatiq's Redis consumer backs off up to the worker timeout (1 s by default) when its
        # queue is empty; the documented knob (dramatiq_worker_timeout) for idle latency.
        timeout = str(self.settings["worker_timeout_ms"])
        return {**super().worker_env(), "dramatiq_worker_timeout": timeout}


if __name__ == "__main__":
    harness.main(DramatiqDriver)
