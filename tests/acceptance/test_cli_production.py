"""The production CLI as users run it: ``--burst``, environment variables, JSON logs, ``--workers``
(a SIGKILLed worker is restarted and nothing is lost), a failing lifespan, ``--reload``, and the
``memory://`` warning. Real subprocesses, real signals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import anyio
import msgspec
import pytest

from asynctask import App, JobStatus
from asynctask.models import Job
from tests.backend_postgres import URL as POSTGRES_URL
from tests.backend_postgres import drop_schema
from tests.workerprocs import wait_for

APP_MODULE = textwrap.dedent(
    """
    import logging
    import os
    from collections.abc import AsyncIterator

    import anyio
    from asynctask import App, JobCtx

    app = App()
    log = logging.getLogger("jobsapp")

    def note(line: str) -> None:
        with open(os.environ["JOB_LOG"], "a") as f:
            f.write(line + "\\n")

    @app.lifespan
    async def resources() -> AsyncIterator[str]:
        if os.environ.get("FAIL_LIFESPAN"):
            raise ConnectionRefusedError("cannot reach the database at 127.0.0.1:1")
        yield "pool"

    @app.task
    async def work(ctx: JobCtx, n: int) -> int:
        note(f"start {n} {os.getpid()}")
        await anyio.sleep(float(os.environ.get("JOB_SECONDS", "0.01")))
        note(f"end {n}")
        return n * 2

    @app.task(queue="stuck", timeout=0.3, max_retries=0)
    def stuck(ctx: JobCtx) -> None:
        import time
        while True:  # ignores every request to stop: only the process's exit ends it
            time.sleep(0.05)

    @app.task(queue="other", max_retries=0)
    def shout(ctx: JobCtx, text: str) -> str:
        log.info("shouting %s", text)
        if text == "fail":
            raise ValueError("cannot shout that")
        return text.upper()
    """
)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "jobsapp.py").write_text(APP_MODULE)
    return tmp_path


def env_for(project: Path, **extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("ASYNCTASK_") or k.startswith("ASYNCTASK_TEST")
    }
    return {**env, "JOB_LOG": str(project / "jobs.log"), **extra}


def start(project: Path, *args: str, stderr: object = subprocess.PIPE, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(  # type: ignore[call-overload, no-any-return]
        [sys.executable, "-m", "asynctask", *args],
        cwd=project,
        env=env_for(project, **env),
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
    )


def run(project: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    proc = start(project, *args, **env)
    try:
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()  # never leave a hung CLI behind; a no-op once it exited
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def snapshot(path: Path) -> dict[str, Job]:
    return {j.id: j for j in msgspec.json.decode(path.read_bytes(), type=list[Job])}


def publish(project: Path, broker: str, count: int, *, shout: Sequence[str] = (), stuck: int = 0) -> None:
    """Publish ``work`` jobs 0..count-1 and ``shout`` jobs from the test process (one round trip)."""
    sys.path.insert(0, str(project))
    try:
        import jobsapp  # type: ignore[import-not-found]

        app: App = jobsapp.app
        app.set_broker(broker)

        async def go() -> None:
            async with app:
                specs = [app.tasks["work"].spec(n, job_id=f"job-{n}") for n in range(count)]
                specs += [app.tasks["shout"].spec(text, job_id=f"shout-{text}") for text in shout]
                specs += [app.tasks["stuck"].spec(None, job_id=f"stuck-{n}") for n in range(stuck)]
                await app.publish_many(specs)

        anyio.run(go)
    finally:
        sys.path.pop(0)
        sys.modules.pop("jobsapp", None)


def test_burst_runs_what_is_queued_then_exits_0(project: Path) -> None:
    path = project / "jobs.json"
    publish(project, f"memory://{path}", 30, shout=["hi"])
    res = run(project, "worker", "jobsapp:app", "--burst", "--broker", f"memory://{path}", "-c", "5")
    assert res.returncode == 0, res.stderr
    assert "burst: no job left to claim in default, stuck, other; stopping" in res.stderr
    jobs = snapshot(path)
    assert len(jobs) == 31 and {j.status for j in jobs.values()} == {JobStatus.SUCCEEDED}


def test_every_flag_can_come_from_the_environment_and_help_says_so(project: Path) -> None:
    shown = run(project, "worker", "--help")
    for name in (
        "ASYNCTASK_WORKER_CONCURRENCY",
        "ASYNCTASK_WORKER_QUEUES",
        "ASYNCTASK_WORKER_BURST",
        "ASYNCTASK_WORKER_WORKERS",
        "ASYNCTASK_WORKER_LOG_FORMAT",
        "ASYNCTASK_WORKER_CONFIGURE_LOGGING",
        "ASYNCTASK_BROKER_URL",
    ):
        assert name in shown.stdout, name
    assert "ASYNCTASK_PUBLISH_DELAY" in run(project, "publish", "--help").stdout
    path = project / "jobs.json"
    publish(project, f"memory://{path}", 3, shout=["env"])
    res = run(
        project,
        "worker",
        "jobsapp:app",
        ASYNCTASK_BROKER_URL=f"memory://{path}",
        ASYNCTASK_WORKER_BURST="1",
        ASYNCTASK_WORKER_CONCURRENCY="3",
        ASYNCTASK_WORKER_QUEUES="other",
        ASYNCTASK_WORKER_LOG_FORMAT="json",
        ASYNCTASK_WORKER_POLL_INTERVAL="0.05",
    )
    assert res.returncode == 0, res.stderr
    lines = [json.loads(line) for line in res.stderr.splitlines()]
    started = next(line for line in lines if line["action"] == "worker_started")
    assert f"broker memory://{path}, queues other, concurrency 3" in started["message"]
    jobs = snapshot(path)
    assert jobs["shout-env"].status is JobStatus.SUCCEEDED
    assert {jobs[f"job-{n}"].status for n in range(3)} == {JobStatus.QUEUED}, "only the queue asked for"


def test_json_logs_are_one_object_per_line_with_the_job_fields(project: Path) -> None:
    path = project / "jobs.json"
    publish(project, f"memory://{path}", 0, shout=["hello", "fail"])
    res = run(
        project, "worker", "jobsapp:app", "--burst", "--log-format", "json", "--broker", f"memory://{path}"
    )
    assert res.returncode == 0, res.stderr
    lines = [json.loads(line) for line in res.stderr.splitlines()]  # every line is one JSON object
    keys = ["time", "level", "logger", "message", "action", "job_id", "task", "queue", "attempt", "worker"]
    assert all(list(line)[: len(keys)] == keys for line in lines)
    worker_id = next(line["worker"] for line in lines if line["action"] == "worker_started")
    assert worker_id and all(
        line["worker"] == worker_id for line in lines if line["logger"] != "asynctask.cli"
    )
    failed = next(line for line in lines if line["action"] == "job_failed")
    assert failed["level"] == "ERROR" and failed["job_id"] == "shout-fail"
    assert (failed["task"], failed["queue"], failed["attempt"]) == ("shout", "other", 1)
    own = next(line for line in lines if line["logger"] == "jobsapp" and "hello" in line["message"])
    assert (own["job_id"], own["task"], own["attempt"]) == ("shout-hello", "shout", 1), (
        "the app's own log line"
    )


def test_a_stuck_def_handler_does_not_keep_a_stopped_worker_alive(project: Path) -> None:
    path = project / "jobs.json"
    publish(project, f"memory://{path}", 1, stuck=1)
    res = run(project, "worker", "jobsapp:app", "--burst", "--broker", f"memory://{path}")
    assert res.returncode == 0, res.stderr
    assert "1 sync handler thread(s) still running after the worker stopped" in res.stderr
    jobs = snapshot(path)
    assert jobs["stuck-0"].status is JobStatus.FAILED and "TimeoutError" in (jobs["stuck-0"].error or "")
    assert jobs["job-0"].status is JobStatus.SUCCEEDED


def test_no_configure_logging_leaves_logging_to_the_app(project: Path) -> None:
    path = project / "jobs.json"
    publish(project, f"memory://{path}", 1)
    res = run(
        project, "worker", "jobsapp:app", "--burst", "--no-configure-logging", "--broker", f"memory://{path}"
    )
    assert res.returncode == 0 and res.stderr == "", res.stderr  # INFO records went nowhere


def test_a_failing_lifespan_stops_the_worker_with_one_line(project: Path) -> None:
    path = project / "jobs.json"
    publish(project, f"memory://{path}", 2)
    res = run(project, "worker", "jobsapp:app", "--broker", f"memory://{path}", FAIL_LIFESPAN="1")
    assert res.returncode == 2
    assert res.stderr == (
        "asynctask: error: the worker lifespan resources failed while starting: "
        "ConnectionRefusedError: cannot reach the database at 127.0.0.1:1\n"
    )
    assert {j.attempts for j in snapshot(path).values()} == {0}, "nothing was claimed"


def test_publish_and_jobs_on_memory_say_the_job_does_not_outlive_them(project: Path) -> None:
    published = run(project, "publish", "jobsapp:app", "work", "1")
    assert published.returncode == 0 and published.stdout.strip()
    assert published.stderr.startswith("asynctask: warning: this ran on memory://, whose jobs live in this")
    shown = run(project, "jobs", "jobsapp:app", "show", published.stdout.strip())
    assert shown.returncode == 2
    assert "no job with id" in shown.stderr and "this ran on memory://" in shown.stderr
    assert len(shown.stderr.strip().splitlines()) == 1
    saved = run(project, "publish", "jobsapp:app", "work", "1", "--broker", f"memory://{project / 'j.json'}")
    assert saved.returncode == 0 and saved.stderr == ""


@pytest.fixture
def postgres_url() -> Iterator[str]:
    schema = f"t_{uuid.uuid4().hex}"
    url = f"{POSTGRES_URL}?schema={schema}"
    migrated = subprocess.run(
        [sys.executable, "-m", "asynctask", "migrate", "--broker", url], capture_output=True, text=True
    )
    assert migrated.returncode == 0, migrated.stderr
    try:
        yield url
    finally:
        anyio.run(drop_schema, schema)


def statuses(url: str, count: int) -> dict[JobStatus, int]:
    async def go() -> dict[JobStatus, int]:
        async with App(url) as app:
            found: dict[JobStatus, int] = {}
            for job in await app.list_jobs(limit=count + 10):
                found[job.status] = found.get(job.status, 0) + 1
            return found

    return anyio.run(go)


@pytest.mark.slow
def test_workers_3_restart_a_killed_worker_and_lose_nothing(project: Path, postgres_url: str) -> None:
    publish(project, postgres_url, 60)
    errors = project / "supervisor.err"
    with errors.open("w") as err_file:
        supervisor = start(
            project,
            "worker",
            "jobsapp:app",
            "--workers",
            "3",
            "-c",
            "2",
            "--prefetch",
            "0",
            "--lease",
            "1.5",
            "--maintenance-interval",
            "0.2",
            "--poll-interval",
            "0.1",
            stderr=err_file,
            ASYNCTASK_BROKER_URL=postgres_url,
            JOB_SECONDS="0.1",
        )
        try:
            wait_for(lambda: len(_children(errors)) == 3)
            children = _children(errors)
            assert len(children) == 3, errors.read_text()
            wait_for(lambda: _log(project).count("end") >= 6)
            victim_slot, victim = next(iter(children.items()))
            os.kill(victim, signal.SIGKILL)
            wait_for(
                lambda: (
                    f"worker process {victim_slot} (pid {victim}) was killed by SIGKILL" in errors.read_text()
                )
            )
            wait_for(lambda: _children(errors)[victim_slot] != victim)
            replacement = _children(errors)[victim_slot]
            wait_for(lambda: statuses(postgres_url, 60).get(JobStatus.SUCCEEDED, 0) == 60, timeout=60)
            supervisor.send_signal(signal.SIGTERM)
            supervisor.communicate(timeout=30)
        finally:
            supervisor.kill()
    text = errors.read_text()
    assert supervisor.returncode == 0, text
    assert "SIGTERM: shutting down gracefully" in text
    assert statuses(postgres_url, 60) == {JobStatus.SUCCEEDED: 60}, "nothing lost"
    ends = [line for line in _log(project).splitlines() if line.startswith("end")]
    assert {line.split()[1] for line in ends} == {str(n) for n in range(60)}
    for pid in [*children.values(), replacement]:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)  # every worker process is gone


@pytest.mark.slow
def test_workers_that_keep_crashing_make_the_supervisor_exit_non_zero(
    project: Path, postgres_url: str
) -> None:
    res = run(project, "worker", "jobsapp:app", "--workers", "2", "--broker", postgres_url, FAIL_LIFESPAN="1")
    assert res.returncode == 1, res.stderr
    assert (
        "worker processes keep crashing (5 failures within 60s, the last one exited with status 2)"
        in res.stderr
    )
    assert res.stderr.count("failed while starting: ConnectionRefusedError") >= 5


def test_workers_need_a_shared_broker(project: Path) -> None:
    res = run(project, "worker", "jobsapp:app", "--workers", "2")
    assert res.returncode == 2
    assert "--workers 2 needs a broker the processes share; memory:// lives in one process" in res.stderr


@pytest.mark.slow
def test_reload_restarts_the_worker_when_the_code_changes(project: Path) -> None:
    errors = project / "reload.err"
    with errors.open("w") as err_file:
        worker = start(
            project,
            "worker",
            "jobsapp:app",
            "--reload",
            "--broker",
            f"memory://{project / 'j.json'}",
            stderr=err_file,
        )
        try:
            wait_for(lambda: errors.read_text().count("started: broker") == 1)
            (project / "jobsapp.py").write_text(APP_MODULE + "\n# changed\n")
            wait_for(lambda: "code changed (jobsapp.py): restarting the worker" in errors.read_text())
            wait_for(lambda: errors.read_text().count("started: broker") == 2)
            worker.send_signal(signal.SIGINT)
            worker.communicate(timeout=30)
        finally:
            worker.kill()
    assert worker.returncode == 0, errors.read_text()


def _children(errors: Path) -> dict[int, int]:
    """Worker slot → pid of its latest process, from the supervisor's log."""
    found: dict[int, int] = {}
    for line in errors.read_text().splitlines():
        if "worker process " in line and " started (pid " in line:
            slot = int(line.split("worker process ", 1)[1].split()[0])
            found[slot] = int(line.split("(pid ", 1)[1].split(")")[0])
    return found


def _log(project: Path) -> str:
    path = project / "jobs.log"
    return path.read_text() if path.exists() else ""
