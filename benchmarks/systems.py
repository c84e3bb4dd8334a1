"""The systems under test: asynctask on each broker, and every peer in its own venv.

Adding asynctask on another broker is one line here (``ours("nats")``; the broker's URL and wipe
are in :mod:`benchmarks.peers.targets`). Adding a peer: an app module, a driver, a venv in
:data:`benchmarks.setup_peers.PEERS`, its settings in :data:`benchmarks.tuning.TUNING` and a
line here.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from benchmarks import setup_peers


@dataclass(frozen=True)
class System:
    name: str
    broker: str  # "redis", "postgres", ...: peers are compared on the same broker
    #: The peer's venv under benchmarks/.venvs/; None runs in this interpreter (asynctask).
    venv: str | None
    module: str
    notes: str = ""
    #: The key of its settings in benchmarks.tuning.TUNING (default: the name).
    library: str = ""
    #: asynctask with observability on (issue #14): ``metrics`` (``--metrics-port``), ``tracing``
    #: (OpenTelemetry SDK provider, no exporter) or ``tracing-unset`` (instrumented, no provider).
    #: Run only when named with --systems.
    variant: str | None = None
    #: Run only when named with --systems (a broker whose only server here would be measured
    #: instead of the library: asynctask-mongo, see benchmarks/README.md).
    opt_in: bool = False

    @property
    def is_asynctask(self) -> bool:
        return self.venv is None

    @property
    def tuning_key(self) -> str:
        return self.library or self.name

    def python(self) -> Path:
        return Path(sys.executable) if self.venv is None else setup_peers.python_of(self.venv)

    def command(self, workload: str) -> list[str]:
        extra = ["--broker", self.broker] if self.is_asynctask else []
        if self.variant:
            extra += ["--variant", self.variant]
        return [str(self.python()), "-m", self.module, workload, *extra]


def ours(broker: str, variant: str | None = None, notes: str = "", *, opt_in: bool = False) -> System:
    """asynctask on ``broker`` (a key of benchmarks.peers.targets.TARGETS), observed by ``variant``."""
    name = f"asynctask-{broker}" + (f"-{variant}" if variant else "")
    module = "benchmarks.peers.drive_asynctask"
    return System(name, broker, None, module, notes, "asynctask", variant, opt_in)


#: The observability variants (issue #14), each next to the plain worker on its broker.
VARIANTS = {
    "metrics": "--metrics-port: Prometheus metrics and health probes served",
    "tracing": "OpenTelemetry SDK provider, no exporter",
    "tracing-unset": "instrumented, no tracer provider configured",
}


def peer(name: str, broker: str, notes: str = "") -> System:
    """A peer with its venv, app and driver named after it (``benchmarks.peers.drive_<name>``)."""
    return System(name, broker, name, f"benchmarks.peers.drive_{name.replace('-', '_')}", notes)


SYSTEMS: dict[str, System] = {
    s.name: s
    for s in [
        ours("redis"),
        peer("dramatiq", "redis", "processes x threads"),
        peer("taskiq", "redis", "taskiq-redis streams"),
        peer("arq", "redis"),
        peer("saq", "redis"),
        peer("streaq", "redis"),
        ours("postgres"),
        peer("pgqueuer", "postgres"),
        peer("procrastinate", "postgres"),
        ours("nats"),
        peer("taskiq-nats", "nats", "taskiq-nats JetStream pull consumer"),
        # Needs BENCH_MONGO_URL; not in the default run (benchmarks/README.md says why).
        ours("mongo", notes="opt-in: BENCH_MONGO_URL", opt_in=True),
        *(
            ours(broker, variant, notes)
            for broker in ("redis", "postgres")
            for variant, notes in VARIANTS.items()
        ),
    ]
}

#: What ``python -m benchmarks`` runs unless --systems names others: not the variants, not the
#: opt-in systems.
DEFAULT_SYSTEMS = [name for name, s in SYSTEMS.items() if s.variant is None and not s.opt_in]
