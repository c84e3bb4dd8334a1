"""``asynctask web APP``: serve the web dashboard with uvicorn (the ``web`` extra)."""

from __future__ import annotations

import click

from asynctask.brokers import require
from asynctask.cli.common import LOG_LEVELS, friendly, load_app
from asynctask.log import configure_logging

__all__ = ["web"]


@click.command()
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
@click.option("--log-level", default="INFO", show_default=True, type=LOG_LEVELS)
@friendly
def web(
    app_path: str, port: int, host: str, read_only: bool, broker: str | None, root_path: str, log_level: str
) -> None:
    """Serve the web dashboard of APP (needs the `web` extra)."""
    # Checked before APP is imported, so a missing extra is the one line the user sees.
    uvicorn = require("uvicorn", "web")
    from asynctask.web import create_app

    configure_logging(log_level)
    dashboard = create_app(load_app(app_path, broker), read_only=read_only)
    note = " (read-only)" if read_only else ""
    click.echo(f"asynctask dashboard on http://{host}:{port}{root_path}/{note}")
    uvicorn.run(dashboard, host=host, port=port, root_path=root_path, log_level=log_level.lower())
