"""The systems under test: asynctask on each broker, and every peer in its own venv."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from benchmarks import setup_peers


@dataclass(frozen=True)
class System:
    name: str
    broker: str  # "redis", "postgres" or "nats"
    #: The peer's venv under benchmarks/.venvs/; None runs in this interpreter (asynctask).
    venv: str | None
    module: str
    notes: str = ""

    @property
    def is_asynctask(self) -> bool:
        return self.venv is None

    def python(self) -> Path:
        return Path(sys.executable) if self.venv is None else setup_peers.python_of(self.venv)

    def command(self, workload: str) -> list[str]:
        extra = ["--broker", self.broker] if self.is_asynctask else []
        return [str(self.python()), "-m", self.module, workload, *extra]


SYSTEMS: dict[str, System] = {
    s.name: s
    for s in [
        System("asynctask-redis", "redis", None, "benchmarks.peers.drive_asynctask"),
        System(
            "dramatiq",
            "redis",
            "dramatiq",
            "benchmarks.peers.drive_dramatiq",
            "threads; worker timeout 100 ms",
        ),
        System("taskiq", "redis", "taskiq", "benchmarks.peers.drive_taskiq", "taskiq-redis streams"),
        System("arq", "redis", "arq", "benchmarks.peers.drive_arq", "poll_delay 0.01 s"),
        System("saq", "redis", "saq", "benchmarks.peers.drive_saq"),
        System("streaq", "redis", "streaq", "benchmarks.peers.drive_streaq"),
        System("asynctask-postgres", "postgres", None, "benchmarks.peers.drive_asynctask"),
        System("pgqueuer", "postgres", "pgqueuer", "benchmarks.peers.drive_pgqueuer"),
        System("procrastinate", "postgres", "procrastinate", "benchmarks.peers.drive_procrastinate"),
        System("asynctask-nats", "nats", None, "benchmarks.peers.drive_asynctask"),
        System(
            "taskiq-nats",
            "nats",
            "taskiq-nats",
            "benchmarks.peers.drive_taskiq_nats",
            "JetStream pull consumer, fetch batch = concurrency",
        ),
    ]
}
