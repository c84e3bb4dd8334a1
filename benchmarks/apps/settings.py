"""The per-run settings every app module reads from the environment (set by the driver).

Standard library only: imported by every peer's app, in every peer's venv.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

#: The run's namespace: queue name, key prefix or database name, unique per run.
NAMESPACE = os.environ.get("BENCH_NAMESPACE", "bench_default")
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "100"))
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
POSTGRES_URL = os.environ.get("BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
NATS_URL = os.environ.get("BENCH_NATS_URL", "nats://127.0.0.1:4222")
#: This library's settings for this run (``benchmarks.tuning``; the driver passes them on).
SETTINGS: dict[str, Any] = json.loads(os.environ.get("BENCH_SETTINGS") or "{}")

#: For CLIs that take a logging dictConfig: everything at WARNING, to stderr.
LOG_CONFIG = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler", "level": "WARNING"}},
    "root": {"handlers": ["stderr"], "level": "WARNING"},
}


def quiet(*names: str) -> None:
    """Set the named loggers to WARNING (for CLIs that log every job at INFO)."""
    for name in names:
        logging.getLogger(name).setLevel(logging.WARNING)
