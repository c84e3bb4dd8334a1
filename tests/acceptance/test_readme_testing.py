"""The README's "Testing your tasks" section runs as written.

Its code blocks each start with a comment naming a file (``# myapp/jobs.py``); this test writes
them, unchanged, into a fresh project and runs pytest there in a subprocess, as a user would (the
plugin loaded from the snippet's own ``addopts``). Executing the README text itself, rather than
keeping a tested copy in sync with it, means the section cannot drift from the code.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"
_BLOCK = re.compile(r"```(?P<lang>python|toml)\n(?P<body>.*?)```", re.S)


def section(title: str) -> str:
    text = README.read_text()
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def files(text: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for block in _BLOCK.finditer(text):
        body = block["body"]
        first = body.splitlines()[0]
        assert first.startswith("# "), f"a block of the section does not name its file: {first!r}"
        found[first[2:].strip()] = body
    return found


def test_the_testing_your_tasks_snippets_run(tmp_path: Path) -> None:
    written = files(section("Testing your tasks"))
    assert set(written) == {"pyproject.toml", "myapp/jobs.py", "tests/test_jobs.py"}
    for name, body in written.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(body)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASYNCTASK_") or "_TEST_" in k}
    res = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "error"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert "2 passed" in res.stdout, res.stdout
