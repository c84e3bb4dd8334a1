"""``asynctask web APP``: serve the dashboard with uvicorn.

The command is built by :func:`web_command` and registered by :mod:`asynctask.cli`, which hands
it the CLI's app loader and error guard (this module imports nothing from the CLI, so the two
do not import each other).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import click

from asynctask.brokers import require
from asynctask.log import configure_logging

if TYPE_CHECKING:
    from asynctask.app import App

__all__ = ["web_command"]

_LEVELS = click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False)


def web_command(
    load_app: Callable[[str, str | None], App], guard: Callable[[Callable[..., None]], Callable[..., None]]
) -> click.Command:
    """The ``web`` command, loading APP with ``load_app`` and reporting errors through ``guard``."""

    @click.command("web")
    @click.argument("app_path", metavar="APP")
    @click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
    @click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
    @click.option("--read-only", is_flag=True, help="Show everything, allow no action.")
    @click.option("--broker", envvar="ASYNCTASK_BROKER_URL", help="Broker URL (overrides the app's).")
    @click.option(
        "--root-path",
        default="",
        help="Prefix under which a proxy serves it (the proxy strips it), e.g. /tasks.",
    )
    @click.option("--log-level", default="INFO", show_default=True, type=_LEVELS)
    @guard
    def web(
        app_path: str,
        port: int,
        host: str,
        read_only: bool,
        broker: str | None,
        root_path: str,
        log_level: str,
    ) -> None:
        """Serve the web dashboard of APP (needs the `web` extra)."""
        uvicorn = require("uvicorn", "web")
        from asynctask.web import create_app

        configure_logging(log_level)
        dashboard = create_app(load_app(app_path, broker), read_only=read_only)
        click.echo(
            f"asynctask dashboard on http://{host}:{port}{root_path}/" + (" (read-only)" if read_only else "")
        )
        uvicorn.run(dashboard, host=host, port=port, root_path=root_path, log_level=log_level.lower())

    return web
