"""``asynctask migrate --broker URL``: create or upgrade a broker's schema."""

from __future__ import annotations

import click

from asynctask.app import App
from asynctask.brokers.base import Migratable
from asynctask.cli.common import friendly, run_async

__all__ = ["migrate"]


@click.command()
@click.option("--broker", envvar="ASYNCTASK_BROKER_URL", required=True, help="Broker URL.")
@friendly
def migrate(broker: str) -> None:
    """Create or upgrade the broker's schema (PostgreSQL); says what it did."""
    target = App(broker).broker
    if not isinstance(target, Migratable):
        click.echo(f"{target.display_url}: this broker has no schema to migrate")
        return
    done = run_async(target.migrate)
    click.echo(f"{target.display_url}: {done.describe()}")
