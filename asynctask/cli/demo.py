"""``asynctask demo``: the self-contained demo on the in-memory broker."""

from __future__ import annotations

import functools

import click

from asynctask.cli.common import LOG_LEVELS_ALL, friendly, run_async
from asynctask.log import configure_logging

__all__ = ["demo"]


@click.command()
@click.option("--jobs", "count", default=300, show_default=True, help="How many jobs to publish.")
@click.option("-c", "--concurrency", default=10, show_default=True)
@click.option("--log-level", default="CRITICAL", show_default=True, type=LOG_LEVELS_ALL)
@friendly
def demo(count: int, concurrency: int, log_level: str) -> None:
    """Run a self-contained demo on the in-memory broker (no server needed)."""
    from asynctask.demo import run_demo

    configure_logging(log_level)
    run_async(functools.partial(run_demo, count=count, concurrency=concurrency))
