"""Every runnable example in examples/ runs and prints what its docstring promises."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        ("quickstart.py", "sent 'Hello' to bob@flaky.example"),
        ("subtasks.py", "{'total': 20, 'failed': 1}"),
        ("groups_and_chains.py", "chain: 24"),
        ("pipeline.py", "result: 5"),
        ("incremental.py", "result: 200"),
        ("flow_control.py", "billing resumed: charged 1250"),
    ],
)
def test_example_runs(script: str, expected: str) -> None:
    res = subprocess.run(
        [sys.executable, script], cwd=EXAMPLES, capture_output=True, text=True, timeout=60, check=False
    )
    assert res.returncode == 0, res.stderr
    assert expected in res.stdout
