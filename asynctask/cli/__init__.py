"""The ``asynctask`` command line: one module per command (group), registered here.

``worker``, ``publish``, ``jobs``, ``queues``, ``migrate``, ``demo``, ``web``, ``workers``, ``check``;
see ``asynctask --help``. Bad input prints one line to stderr and exits with status 2
(:mod:`asynctask.cli.common`).

Every option can come from an environment variable named ``ASYNCTASK_<COMMAND>_<OPTION>``
(``ASYNCTASK_WORKER_CONCURRENCY=20``, ``ASYNCTASK_JOBS_LIST_LIMIT``; for a flag, ``1``/``0``),
except ``--broker``, which reads ``ASYNCTASK_BROKER_URL`` everywhere; ``--help`` shows each name.
"""

from __future__ import annotations

import click

from asynctask.cli.check import check
from asynctask.cli.demo import demo
from asynctask.cli.jobs import jobs
from asynctask.cli.migrate import migrate
from asynctask.cli.publish import publish
from asynctask.cli.queues import queues
from asynctask.cli.web import web
from asynctask.cli.worker import worker
from asynctask.cli.workers import workers

__all__ = ["main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"], "auto_envvar_prefix": "ASYNCTASK"})
@click.version_option(package_name="asynctask")
def main() -> None:
    """asynctask: an asyncio-native distributed job queue."""


for _command in (worker, publish, jobs, queues, migrate, demo, web, workers, check):
    main.add_command(_command)


def _show_envvars(command: click.Command) -> None:
    """Every option says in ``--help`` which environment variable sets it."""
    for param in command.params:
        if isinstance(param, click.Option) and param.expose_value and param.name not in ("help", "version"):
            param.show_envvar = True
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            _show_envvars(sub)


_show_envvars(main)
