"""The CLI as users run it: real subprocesses, real signals.

The worker runs on a snapshot-backed memory broker (``memory:///path``): the job table is written
when the worker exits, so the test can check, job by job, that SIGTERM lost nothing.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import msgspec
import pytest

from asynctask.models import Job, JobStatus
from tests.workerprocs import wait_for

APP_MODULE = textwrap.dedent(
    """
    import os
    import anyio
    from asynctask import App, JobCtx

    app = App()

    @app.task
    async def work(ctx: JobCtx, n: int) -> int:
        log = os.environ["JOB_LOG"]
        with open(log, "a") as f:
            f.write(f"start {n}\\n")
        await anyio.sleep(float(os.environ.get("JOB_SECONDS", "0.3")))
        with open(log, "a") as f:
            f.write(f"end {n}\\n")
        return n * 2
    """
)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "jobsapp.py").write_text(APP_MODULE)
    (tmp_path / "broken.py").write_text("from asynctask import App\napp = App()\ndef oops(:\n    pass\n")
    (tmp_path / "raising.py").write_text("raise RuntimeError('no config file found')\n")
    return tmp_path


def cli(
    project: Path, *args: str, env: dict[str, str] | None = None, stderr: object = subprocess.PIPE
) -> subprocess.Popen[str]:
    full_env = {**os.environ, "JOB_LOG": str(project / "jobs.log"), **(env or {})}
    full_env.pop("ASYNCTASK_BROKER_URL", None)
    return subprocess.Popen(  # type: ignore[call-overload, no-any-return]
        [sys.executable, "-m", "asynctask", *args],
        cwd=project,
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
    )


def run(project: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    proc = cli(project, *args, env=env)
    out, err = proc.communicate(timeout=60)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def log_lines(project: Path) -> list[str]:
    path = project / "jobs.log"
    return path.read_text().splitlines() if path.exists() else []


def snapshot(path: Path) -> dict[str, Job]:
    return {j.id: j for j in msgspec.json.decode(path.read_bytes(), type=list[Job])}


def publish_jobs(project: Path, broker: str, count: int) -> None:
    for n in range(count):
        res = run(
            project, "publish", "jobsapp:app", "work", str(n), "--job-id", f"job-{n}", "--broker", broker
        )
        assert res.returncode == 0, res.stderr
        assert res.stdout.strip() == f"job-{n}"


@pytest.mark.parametrize("grace", ["30", "0.05"])
def test_sigterm_mid_run_loses_no_job(project: Path, grace: str) -> None:
    broker = f"memory://{project / 'jobs.json'}"
    publish_jobs(project, broker, 12)
    again = run(project, "publish", "jobsapp:app", "work", "0", "--job-id", "job-0", "--broker", broker)
    assert again.stdout.strip() == "job-0 (already existed)"

    worker = cli(
        project,
        "worker",
        "jobsapp:app",
        "-c",
        "3",
        "--shutdown-grace",
        grace,
        "--broker",
        broker,
        "--poll-interval",
        "0.05",
        env={"JOB_SECONDS": "0.5"},
    )
    try:
        wait_for(lambda: sum(line.startswith("start") for line in log_lines(project)) >= 3)
        worker.send_signal(signal.SIGTERM)
        _, err = worker.communicate(timeout=60)
    finally:
        worker.kill()
    assert worker.returncode == 0, err
    assert "started: broker memory://" in err and "queues default, concurrency 3" in err
    assert "SIGTERM: shutting down gracefully" in err

    jobs = snapshot(project / "jobs.json")
    assert sorted(jobs) == sorted(f"job-{n}" for n in range(12)), "every job is still there"
    statuses = {j.status for j in jobs.values()}
    assert statuses <= {JobStatus.SUCCEEDED, JobStatus.QUEUED}, statuses
    succeeded = {j.id for j in jobs.values() if j.status is JobStatus.SUCCEEDED}
    started = {int(line.split()[1]) for line in log_lines(project) if line.startswith("start")}
    if grace == "30":
        assert succeeded == {f"job-{n}" for n in started}, "in-flight jobs were allowed to finish"
    else:
        assert succeeded == set(), "in-flight jobs were interrupted after the 0.05 s grace"
        assert all(j.attempts == 0 for j in jobs.values()), "handed-back attempts do not count"

    # A second worker finishes the rest; no job completes twice.
    worker = cli(
        project,
        "worker",
        "jobsapp:app",
        "-c",
        "4",
        "--broker",
        broker,
        "--poll-interval",
        "0.05",
        env={"JOB_SECONDS": "0.01"},
    )
    try:
        wait_for(
            lambda: (
                {line for line in log_lines(project) if line.startswith("end")}
                >= {f"end {n}" for n in range(12)}
            )
        )
        worker.send_signal(signal.SIGINT)
        worker.communicate(timeout=60)
    finally:
        worker.kill()
    jobs = snapshot(project / "jobs.json")
    assert all(j.status is JobStatus.SUCCEEDED for j in jobs.values())
    ends = [line for line in log_lines(project) if line.startswith("end")]
    assert sorted(ends) == sorted(set(ends)), "no job ran to completion twice"

    shown = run(project, "jobs", "jobsapp:app", "show", "job-3", "--broker", broker)
    assert shown.returncode == 0, shown.stderr
    assert "succeeded" in shown.stdout and "result" in shown.stdout and "6" in shown.stdout
    listed = run(project, "jobs", "jobsapp:app", "list", "--status", "succeeded", "--broker", broker)
    assert len(listed.stdout.strip().splitlines()) == 12
    # The README's order, --broker between APP and the command, works too.
    listed = run(project, "jobs", "jobsapp:app", "--broker", broker, "list", "--status", "succeeded")
    assert listed.returncode == 0, listed.stderr
    assert len(listed.stdout.strip().splitlines()) == 12


def test_second_signal_stops_at_once(project: Path) -> None:
    broker = f"memory://{project / 'jobs.json'}"
    publish_jobs(project, broker, 2)
    errors = project / "worker.err"
    with errors.open("w") as err_file:
        worker = cli(
            project,
            "worker",
            "jobsapp:app",
            "-c",
            "2",
            "--broker",
            broker,
            "--poll-interval",
            "0.05",
            env={"JOB_SECONDS": "600"},
            stderr=err_file,
        )
        try:
            wait_for(lambda: len(log_lines(project)) >= 2)
            worker.send_signal(signal.SIGTERM)
            # The worker logs this once it handled the first signal: it is now in its 30 s grace.
            wait_for(lambda: "2 job(s) running, grace 30.0s" in errors.read_text())
            worker.send_signal(signal.SIGTERM)
            worker.communicate(timeout=20)
        finally:
            worker.kill()
    err = errors.read_text()
    assert worker.returncode == 0, err
    assert "SIGTERM again: stopping now" in err
    jobs = snapshot(project / "jobs.json")
    assert {j.status for j in jobs.values()} == {JobStatus.QUEUED}
    assert all(j.attempts == 0 for j in jobs.values())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["worker", "nosuchmodule:app"], "cannot import 'nosuchmodule'"),
        (["worker", "broken:app"], "cannot import 'broken' (from APP 'broken:app'): invalid syntax ("),
        (["worker", "raising:app"], "RuntimeError: no config file found"),
        (["worker", "jobsapp:nothing"], "module 'jobsapp' has no attribute 'nothing'"),
        (["worker", "jobsapp:os"], "is a module, not an asynctask.App"),
        (["publish", "jobsapp:app", "nope", "1"], "no task named 'nope' is registered"),
        (["publish", "jobsapp:app", "work", "{not json"], "PAYLOAD is not valid JSON"),
        (["publish", "jobsapp:app", "work", '"x"'], "payload does not match int"),
        (["worker", "jobsapp:app", "--broker", "amqp://x"], "unknown broker URL scheme 'amqp'"),
        (["jobs", "jobsapp:app", "show", "missing"], "no job with id 'missing'"),
        (["jobs", "jobsapp:app", "retry", "missing"], "no job with id 'missing'"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(project: Path, args: list[str], message: str) -> None:
    res = run(project, *args)
    assert res.returncode == 2, (res.stdout, res.stderr)
    assert message in res.stderr
    assert "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1, res.stderr


def test_demo_runs_to_completion(project: Path) -> None:
    res = run(project, "demo", "--jobs", "40", "-c", "20")
    assert res.returncode == 0, res.stderr
    assert "40/40" in res.stdout
    assert "charge_card" in res.stdout and "failed jobs are kept" in res.stdout


@pytest.mark.parametrize(
    ("broker", "message"),
    [
        ("redis://:hunter2@127.0.0.1:1/0", "cannot reach Redis at 127.0.0.1:1"),
        ("postgresql://postgres:hunter2@127.0.0.1:1/test", "cannot reach PostgreSQL at 127.0.0.1:1/test"),
        (
            "postgresql://postgres@127.0.0.1:5432/test?schema=never_migrated",
            "run `asynctask migrate --broker <url>`",
        ),
    ],
)
def test_unusable_broker_is_one_line_and_exit_2(project: Path, broker: str, message: str) -> None:
    res = run(project, "worker", "jobsapp:app", "--broker", broker)
    assert res.returncode == 2, res.stderr
    assert message in res.stderr
    assert "hunter2" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1, res.stderr
    # An unreachable broker names the option that waits for it; a schema to migrate does not.
    assert ("--wait-for-broker SECONDS" in res.stderr) == ("cannot reach" in message), res.stderr


def test_a_worker_given_time_waits_for_its_broker_then_gives_up(project: Path) -> None:
    unreachable = "redis://127.0.0.1:1/0"
    res = run(project, "worker", "jobsapp:app", "--broker", unreachable, "--wait-for-broker", "0.5")
    assert res.returncode == 2, res.stderr
    assert "waits for its broker" in res.stderr  # the warning of each try, then the one-line error
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith("asynctask: error: cannot reach Redis at 127.0.0.1:1"), res.stderr


def test_migrate_creates_the_schema(project: Path) -> None:
    import uuid

    import anyio

    from asynctask.brokers.postgres.sql import latest_version
    from tests.backend_postgres import URL, drop_schema

    latest = latest_version()
    schema = f"t_{uuid.uuid4().hex}"
    url = f"{URL}?schema={schema}"
    try:
        first = run(project, "migrate", "--broker", url)
        assert first.returncode == 0, first.stderr
        assert first.stdout.endswith(f"schema created (version {latest})\n"), first.stdout
        again = run(project, "migrate", "--broker", url)
        assert again.returncode == 0, again.stderr
        assert again.stdout.endswith(f"schema already current (version {latest})\n"), again.stdout
        published = run(project, "publish", "jobsapp:app", "work", "1", "--broker", url)
        assert published.returncode == 0, published.stderr
    finally:
        anyio.run(drop_schema, schema)
    res = run(project, "migrate", "--broker", "memory://")
    assert res.returncode == 0 and "no schema to migrate" in res.stdout
