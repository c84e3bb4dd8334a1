"""Translating asyncpg's exceptions into asynctask's, at the broker boundary.

Callers of the broker see :class:`~asynctask.errors.BrokerUnavailable` (cannot reach or log in
to the server), :class:`~asynctask.errors.SchemaOutdated` (tables missing: run
``asynctask migrate``) or :class:`~asynctask.errors.BrokerError` (anything else the server
reported), never a driver exception. Messages name ``host:port/database``, never a password.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import asyncpg

from asynctask.errors import AsyncTaskError, BrokerError, BrokerUnavailable, SchemaOutdated

__all__ = ["OneLine", "quiet_driver_logs", "schema_outdated", "translate_errors"]

# Cannot connect, cannot log in, or the connection went away.
_UNAVAILABLE: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError,  # SQLSTATE class 08, ConnectionDoesNotExistError included
    asyncpg.InvalidAuthorizationSpecificationError,  # class 28: bad user or password
    asyncpg.InvalidCatalogNameError,  # the database does not exist
    asyncpg.CannotConnectNowError,  # starting up or shutting down
    asyncpg.TooManyConnectionsError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    OSError,  # refused, unreachable, DNS
    TimeoutError,  # connect_timeout
)
# The tables or schema are not there (or not as this version expects).
_OUTDATED: tuple[type[BaseException], ...] = (
    asyncpg.UndefinedTableError,
    asyncpg.InvalidSchemaNameError,
    asyncpg.UndefinedColumnError,
)


def schema_outdated(schema: str, target: str, found: int | None, expected: int) -> SchemaOutdated:
    """The error for a schema that is missing (``found is None``) or at an older version."""
    state = f"does not exist in {target}" if found is None else f"is at version {found} in {target}"
    return SchemaOutdated(
        f"the asynctask schema {schema!r} {state}; this version of asynctask needs version "
        f"{expected}. Run `asynctask migrate --broker <url>` (or open the broker with auto_migrate=True)."
    )


def _reason(exc: BaseException, secret: str | None) -> str:
    if isinstance(exc, TimeoutError) and not str(exc).strip():
        return "no answer in time (command_timeout, or the connect timeout)"
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    # Driver messages do not echo passwords today; make sure it stays that way.
    if secret:
        text = text.replace(secret, "***")
    return text


@contextmanager
def translate_errors(target: str, *, schema: str, secret: str | None = None) -> Iterator[None]:
    """Re-raise driver errors from the body as asynctask errors naming ``target``."""
    try:
        yield
    except AsyncTaskError:
        raise  # already ours (BrokerUnavailable is an OSError too)
    except _UNAVAILABLE as exc:
        raise BrokerUnavailable(f"cannot reach PostgreSQL at {target}: {_reason(exc, secret)}") from exc
    except _OUTDATED as exc:
        raise SchemaOutdated(
            f"the asynctask schema {schema!r} in {target} is missing or outdated "
            f"({_reason(exc, secret)}); run `asynctask migrate --broker <url>`"
        ) from exc
    except (asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise BrokerError(f"PostgreSQL at {target}: {_reason(exc, secret)}") from exc


class OneLine(logging.Filter):
    """Turns a record's traceback into one line naming the cause.

    asyncpg's pool logs a full traceback each time it fails to restore its connection floor,
    about once a second while a server restarts; the cause (``ConnectionResetError: ...``) is
    all an operator needs, and the broker's own records say what it does about it.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            cause = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            record.msg = f"{record.getMessage()} ({cause})"
            record.args = None
            record.exc_info = None
            record.exc_text = None
        return True


def quiet_driver_logs() -> None:
    """Install :class:`OneLine` on asyncpg's pool logger (once)."""
    driver = logging.getLogger("asyncpg.pool")
    if not any(isinstance(f, OneLine) for f in driver.filters):
        driver.addFilter(OneLine())
