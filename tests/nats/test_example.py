"""``examples/tasqueue_nats.py`` runs against NATS and shows every tasqueue feature working."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import anyio

from tests.backend_nats import fresh_prefix, server_url
from tests.nats.test_durable import _drop

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_the_tasqueue_example_runs_on_nats() -> None:
    url = f"{server_url()}?prefix={fresh_prefix()}"
    try:
        res = subprocess.run(
            [sys.executable, "tasqueue_nats.py"],
            cwd=EXAMPLES,
            env={**os.environ, "ASYNCTASK_BROKER_URL": url},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        anyio.run(_drop, url)
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert "enqueued sum-5-4 | same id again creates a job: False" in out
    assert "result: {'result': 9}" in out
    assert "job: succeeded, queue math, attempts 1, max retries 2" in out
    assert "deleted: True | then: None" in out
    assert "divided: 3.0" in out
    assert "group: {'succeeded': 2} succeeded" in out
    assert "group failed: ['succeeded', 'failed']" in out
    assert "chain: 24" in out
    assert "links: [('double', 'succeeded'), ('double', 'succeeded'), ('double', 'succeeded')]" in out
    for callback in (
        "processing add (attempt 1)",
        "success add",
        "retrying flaky_div: the divider is warming up",
        "failed check: https://broken.example is down",
    ):
        assert callback in out
