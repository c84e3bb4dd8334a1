"""Pieces of the production CLI that need no subprocess: the child command line, the missing extra."""

from __future__ import annotations

import sys

import pytest

from asynctask import MissingExtra
from asynctask.cli.reload import run_reloading
from asynctask.cli.supervisor import child_env, worker_command
from asynctask.cli.worker import worker


def test_a_supervised_worker_gets_every_option_but_workers_and_reload() -> None:
    ctx = worker.make_context(
        "worker",
        ["app:app", "-q", "a", "-q", "b", "-c", "7", "--workers", "3", "--burst", "--no-configure-logging"],
    )
    command = worker_command(ctx)
    assert command[:5] == [sys.executable, "-m", "asynctask", "worker", "app:app"]
    args = command[5:]
    assert "--workers" not in args and "--reload" not in args
    assert args[args.index("--concurrency") + 1] == "7"
    assert [args[i + 1] for i, a in enumerate(args) if a == "--queue"] == ["a", "b"]
    assert "--burst" in args and "--no-configure-logging" in args and "--prefetch" not in args
    again = worker.make_context("worker", command[4:])  # what the child parses
    assert {k: v for k, v in again.params.items() if k not in ("workers", "reload")} == {
        k: v for k, v in ctx.params.items() if k not in ("workers", "reload")
    }


def test_reload_without_watchfiles_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "watchfiles", None)  # an import of it now fails
    with pytest.raises(MissingExtra, match=r"pip install 'asynctask\[reload\]'"):
        run_reloading(["true"])


def test_options_from_the_environment_stay_out_of_the_command_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASYNCTASK_BROKER_URL", "redis://:s3cret@cache:6379/0")
    monkeypatch.setenv("ASYNCTASK_WORKER_CONCURRENCY", "12")
    monkeypatch.setenv("ASYNCTASK_WORKER_WORKERS", "4")
    ctx = worker.make_context("worker", ["app:app", "--burst"], auto_envvar_prefix="ASYNCTASK_WORKER")
    assert ctx.params["broker"].endswith("@cache:6379/0") and ctx.params["concurrency"] == 12
    assert ctx.params["workers"] == 4
    command = worker_command(ctx)
    assert command[4:] == ["app:app", "--burst"], "the worker reads them from its environment"
    env = child_env()
    assert env["ASYNCTASK_BROKER_URL"].endswith("@cache:6379/0") and "ASYNCTASK_WORKER_WORKERS" not in env
