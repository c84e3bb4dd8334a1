"""Translating PyMongo's exceptions into asynctask's, at the broker boundary.

Callers see :class:`~asynctask.errors.BrokerUnavailable` (cannot reach or log in to the server)
or :class:`~asynctask.errors.BrokerError` (anything else the server reported), never a driver
exception. Messages name ``hosts/database``, never a password.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from pymongo import errors as perr

from asynctask.errors import AsyncTaskError, BrokerError, BrokerUnavailable, ConfigurationError

__all__ = ["translate"]

# Authentication failed; unauthorized.
_AUTH_CODES = frozenset({18, 13})


def _reason(exc: BaseException, secret: str | None) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    # Cut the tails PyMongo appends ("full error: {...}", the timeouts and the topology of a
    # server selection failure): long, and nothing more for the reader.
    for tail in (", full error:", " (configured timeouts:", ", Timeout:"):
        text = text.partition(tail)[0]
    if len(text) > 500:
        text = text[:500] + "..."
    if secret:
        text = text.replace(secret, "***")
    return text


@contextmanager
def translate(target: str, *, secret: str | None = None, connecting: bool = False) -> Iterator[None]:
    """Re-raise PyMongo errors from the body as asynctask errors naming ``target``."""
    try:
        yield
    except AsyncTaskError:
        raise
    except (perr.ConfigurationError, perr.InvalidURI) as exc:
        raise ConfigurationError(
            f"invalid MongoDB configuration for {target}: {_reason(exc, secret)}"
        ) from None
    except (perr.ConnectionFailure, OSError) as exc:
        raise BrokerUnavailable(f"cannot reach MongoDB at {target}: {_reason(exc, secret)}") from None
    except perr.OperationFailure as exc:
        if exc.code in _AUTH_CODES or connecting:
            raise BrokerUnavailable(f"cannot use MongoDB at {target}: {_reason(exc, secret)}") from None
        raise BrokerError(f"MongoDB at {target}: {_reason(exc, secret)}") from exc
    except perr.PyMongoError as exc:
        raise BrokerError(f"MongoDB at {target}: {_reason(exc, secret)}") from exc
