"""The ``asynctask`` command line: one module per command (group), registered here.

``worker``, ``publish``, ``jobs``, ``queues``, ``migrate``, ``demo``, ``web``; see ``asynctask --help``.
Bad input prints one line to stderr and exits with status 2 (:mod:`asynctask.cli.common`).
"""

from __future__ import annotations

import click

from asynctask.cli.demo import demo
from asynctask.cli.jobs import jobs
from asynctask.cli.migrate import migrate
from asynctask.cli.publish import publish
from asynctask.cli.queues import queues
from asynctask.cli.web import web
from asynctask.cli.worker import worker

__all__ = ["main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="asynctask")
def main() -> None:
    """asynctask: an asyncio-native distributed job queue."""


for _command in (worker, publish, jobs, queues, migrate, demo, web):
    main.add_command(_command)
