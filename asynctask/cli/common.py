"""What every command shares: loading APP, running async code, one-line errors, APP groups.

Bad input (an APP path that does not import, an unknown task, an unreachable broker) prints one
line to stderr and exits with status 2, without a traceback.
"""

from __future__ import annotations

import functools
import importlib
import os
import sys
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, TypeVar

import anyio
import click

from asynctask.app import App
from asynctask.brokers import MemoryBroker
from asynctask.errors import AsyncTaskError
from asynctask.lifecycle import backend_options

__all__ = [
    "LOG_LEVELS",
    "LOG_LEVELS_ALL",
    "AppGroup",
    "CliError",
    "app_command",
    "friendly",
    "load_app",
    "memory_note",
    "run_async",
    "warn_if_memory",
]

P = ParamSpec("P")
T = TypeVar("T")

LOG_LEVELS = click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False)
LOG_LEVELS_ALL = click.Choice(["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"], case_sensitive=False)


class CliError(Exception):
    """A user error: printed as one line, exit status 2."""


def run_async(fn: Callable[[], Awaitable[T]]) -> T:
    """Run ``fn`` on asyncio, with uvloop when it is installed."""
    return anyio.run(fn, backend="asyncio", backend_options=backend_options())


def friendly(fn: Callable[P, T]) -> Callable[P, T]:
    """Turn expected errors into one line on stderr and exit status 2."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return fn(*args, **kwargs)
        except (CliError, AsyncTaskError, OSError) as exc:
            click.echo(f"asynctask: error: {exc}", err=True)
            sys.exit(2)

    return wrapper


def load_app(path: str, broker: str | None = None) -> App:
    """Import ``module.path:attribute`` (attribute defaults to ``app``)."""
    module_name, _, attr = path.partition(":")
    if not module_name:
        raise CliError(f"APP must look like 'package.module:app', got {path!r}")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except SyntaxError as exc:
        where = f"{exc.filename}, line {exc.lineno}" if exc.filename else "unknown place"
        raise CliError(f"cannot import {module_name!r} (from APP {path!r}): {exc.msg} ({where})") from exc
    except Exception as exc:  # ImportError, or anything the module raised while it was imported
        raise CliError(
            f"cannot import {module_name!r} (from APP {path!r}): {type(exc).__name__}: {exc}"
        ) from exc
    try:
        app = getattr(module, attr or "app")
    except AttributeError:
        raise CliError(f"module {module_name!r} has no attribute {attr or 'app'!r}") from None
    if not isinstance(app, App):
        raise CliError(f"{path!r} is a {type(app).__name__}, not an asynctask.App")
    if broker:
        app.set_broker(broker)
    return app


def memory_note(app: App) -> str | None:
    """What to tell a user whose command acted on a ``memory://`` broker that no file backs: its
    jobs live in this process only (``None`` for any other broker)."""
    broker = app.broker
    if isinstance(broker, MemoryBroker) and broker.path is None:
        return (
            "this ran on memory://, whose jobs live in this process only and are gone when it exits "
            "(no broker configured? give --broker URL or set ASYNCTASK_BROKER_URL)"
        )
    return None


def warn_if_memory(app: App) -> None:
    """Say on stderr that what a command just did on ``memory://`` does not outlive it."""
    note = memory_note(app)
    if note is not None:
        click.echo(f"asynctask: warning: {note}", err=True)


class AppGroup(click.Group):
    """A group ``NAME APP [--broker URL] COMMAND ...``: accepts ``--broker`` after APP too, as the
    README writes it (a click group otherwise stops reading its own options at its first argument).
    Its subcommands are made with :func:`app_command`."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        head, rest = args[:1], list(args[1:])
        moved: list[str] = []
        while rest and rest[0].startswith("--broker"):
            option = rest.pop(0)
            moved.append(option)
            if option == "--broker" and rest:
                moved.append(rest.pop(0))
        return super().parse_args(ctx, [*moved, *head, *rest])


def app_command(fn: Callable[..., Awaitable[None]]) -> Callable[..., None]:
    """A subcommand of an :class:`AppGroup`: load APP, open it, run ``fn(app, ...)``.

    The group's callback must store ``(app_path, broker)`` in ``ctx.obj``.
    """

    @click.option("--broker", help="Broker URL (overrides the app's).")
    @click.pass_obj
    @friendly
    @functools.wraps(fn)
    def command(obj: tuple[str, str | None], /, broker: str | None, **kwargs: Any) -> None:
        app_path, group_broker = obj
        app = load_app(app_path, broker or group_broker)

        async def go() -> None:
            async with app:
                await fn(app, **kwargs)

        note = memory_note(app)
        try:
            run_async(go)
        except (CliError, AsyncTaskError) as exc:
            # Still one line: an empty memory:// broker is the likely reason.
            raise CliError(f"{exc}; {note}" if note else str(exc)) from exc
        warn_if_memory(app)

    return command
