"""``asynctask web``: serves the dashboard, and names the extra when it is missing."""

from __future__ import annotations

import subprocess
import sys
import urllib.request

import pytest

from tests.web.servers import ROOT, dashboard

POISON = "import sys; sys.modules[{name!r}] = None; from asynctask.cli import main; main({args!r})"


def run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )


@pytest.mark.parametrize("missing", ["uvicorn", "starlette", "jinja2"])
def test_without_the_extra_the_command_names_it(missing: str) -> None:
    done = run(POISON.format(name=missing, args=["web", "tests.web.browser_app:app"]))
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"asynctask: error: {missing} is not installed; install it with: pip install 'asynctask[web]'"
    ]


def test_the_rest_of_the_cli_works_without_the_extra() -> None:
    done = run(POISON.format(name="starlette", args=["--help"]))
    assert "web" in done.stdout and "Serve the web dashboard" in done.stdout


def test_help_lists_the_options() -> None:
    done = run("from asynctask.cli import main; main(['web', '--help'])")
    for option in ("--port", "--host", "--read-only", "--broker", "--root-path"):
        assert option in done.stdout


def test_serves_the_dashboard() -> None:
    with dashboard("memory://") as base, urllib.request.urlopen(f"{base}/jobs", timeout=10) as answer:
        page = answer.read().decode()
        assert answer.status == 200
    assert "<title>Jobs · asynctask</title>" in page and "send_welcome" in page


def test_serves_under_a_root_path() -> None:
    # As behind a proxy that serves it at /tasks and strips the prefix.
    with (
        dashboard("memory://", "--root-path", "/tasks", "--read-only") as base,
        urllib.request.urlopen(f"{base}/", timeout=10) as answer,
    ):
        page = answer.read().decode()
    assert 'href="/tasks/jobs"' in page and 'data-testid="read-only"' in page
