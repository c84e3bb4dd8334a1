"""``asynctask worker --reload``: restart the worker when the code changes (development only).

The worker runs as a child process (``python -m asynctask worker ...``, the same options) that
:func:`watchfiles.run_process` restarts whenever a ``.py`` file under the current directory
changes; SIGINT/SIGTERM stop it. Needs ``pip install 'asynctask[reload]'`` (watchfiles).
"""

from __future__ import annotations

import logging
import os
import shlex
from collections.abc import Sequence
from typing import Any

from asynctask.brokers import require

__all__ = ["run_reloading"]

log = logging.getLogger("asynctask.reload")


def run_reloading(command: Sequence[str], *, path: str | None = None) -> int:
    """Run ``command`` until interrupted, restarting it on each change of a ``.py`` file."""
    watchfiles = require("watchfiles", "reload")
    root = path or os.getcwd()

    def changed(changes: set[tuple[Any, str]]) -> None:
        files = sorted({os.path.relpath(p, root) for _, p in changes})
        log.info(
            "code changed (%s): restarting the worker",
            ", ".join(files[:5]) + (", ..." if len(files) > 5 else ""),
            extra={"action": "reload"},
        )

    log.info("watching %s for changes (--reload)", root, extra={"action": "reload_watch"})
    watchfiles.run_process(
        root,
        target=shlex.join(command),
        target_type="command",
        watch_filter=watchfiles.PythonFilter(),
        callback=changed,
    )
    return 0
