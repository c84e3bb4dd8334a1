"""The README's Lifecycle example (examples/lifecycle.py) as a process: SIGTERM mid-job is the
worker's graceful stop, whoever owns the signal."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from asynctask.brokers.memory import MemoryBroker
from asynctask.models import JobStatus, NewJob

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "lifecycle.py"


async def _publish(path: Path) -> None:
    broker = MemoryBroker(path=path)
    await broker.open()
    await broker.enqueue([NewJob(id="render-1", task="render", queue="default", payload=b"1.0", run_at=0.0)])
    await broker.close()  # writes the snapshot the example's worker opens


async def _read(path: Path) -> tuple[JobStatus, int]:
    broker = MemoryBroker(path=path)
    await broker.open()
    job = await broker.get("render-1")
    assert job is not None
    return job.status, job.attempts


@pytest.mark.parametrize(
    ("grace", "expected"), [("5", (JobStatus.SUCCEEDED, 1)), ("0.1", (JobStatus.QUEUED, 0))]
)
def test_sigterm_mid_job(tmp_path: Path, grace: str, expected: tuple[JobStatus, int]) -> None:
    snapshot = tmp_path / "jobs.json"
    anyio.run(_publish, snapshot)
    env = {**os.environ, "ASYNCTASK_BROKER_URL": f"memory://{snapshot}", "SHUTDOWN_GRACE": grace}
    proc = subprocess.Popen(
        [sys.executable, str(EXAMPLE)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        lines = []
        for line in proc.stdout:  # blocks until the job has started (the test's timeout bounds it)
            lines.append(line)
            if line.startswith("rendering"):
                break
        assert lines[0] == "cache warm\n", "the sequence ran warm_cache first"
        proc.send_signal(signal.SIGTERM)  # 1 s job: within a 5 s grace, beyond a 0.1 s one
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert anyio.run(_read, snapshot) == expected
