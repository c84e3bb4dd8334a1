"""examples/stepper_mongo.py runs against the test MongoDB and shows each Stepper feature."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import anyio

from tests.backend_mongo import DATABASE, drop_prefix
from tests.mongo import server

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_the_stepper_example_runs_on_mongodb() -> None:
    prefix = f"t{uuid.uuid4().hex[:16]}"
    env = {**os.environ, "ASYNCTASK_MONGO_URL": server.broker_url(prefix, DATABASE)}
    try:
        res = subprocess.run(
            [sys.executable, "stepper_mongo.py"],
            cwd=EXAMPLES,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        anyio.run(drop_prefix, prefix)
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert "hello, stepper" in out
    assert "flaky succeeded on attempt 2" in out
    assert "walk resumes at 0" in out and "walk resumes at 5" in out, "the second attempt resumed"
    assert "walk finished at 10" in out
    assert "subtasks are over: A-S-Y-N-C" in out
