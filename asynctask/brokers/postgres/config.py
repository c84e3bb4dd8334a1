"""Reading a ``postgresql://`` URL: our options out, the rest for asyncpg, the password hidden.

>>> cfg = parse_url("postgresql://app:s3cret@db.internal/jobs?schema=work&notify=false")
>>> cfg.display_url
'postgresql://app:***@db.internal/jobs?schema=work&notify=false'
>>> cfg.target, cfg.schema, cfg.notify
('db.internal:5432/jobs', 'work', False)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

from asynctask.errors import ConfigurationError
from asynctask.log import join_url as _join
from asynctask.log import redact_url

__all__ = ["PostgresOptions", "parse_url", "pick", "redact_url"]

_T = TypeVar("_T")

_SCHEMES = frozenset({"postgresql", "postgres"})
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


# Query parameters that are secrets in libpq URLs.
@dataclass(frozen=True)
class PostgresOptions:
    """What a URL says, split into the broker's options and the DSN handed to asyncpg."""

    #: The URL for asyncpg, with the broker's own query parameters removed. Holds the password.
    dsn: str = field(repr=False)
    #: The URL with its password redacted, for logs, reprs and errors.
    display_url: str
    #: ``host:port/database``, for error messages.
    target: str
    #: The password, if the URL has one: scrubbed from any error text.
    secret: str | None = field(default=None, repr=False)
    schema: str = "asynctask"
    notify: bool = True
    auto_migrate: bool = False
    poll_interval: float = 1.0
    #: Seconds each statement may take (asyncpg's ``command_timeout``); ``None``: the default.
    command_timeout: float | None = None
    #: Extra keyword arguments for ``asyncpg.create_pool`` (sizes, statement cache).
    pool_options: dict[str, Any] = field(default_factory=dict)


def _flag(name: str, value: str) -> bool:
    lowered = value.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ConfigurationError(f"URL option {name}={value!r} must be true or false")


def _number(name: str, value: str, kind: type[int] | type[float]) -> Any:
    try:
        number = kind(value)
    except ValueError:
        raise ConfigurationError(f"URL option {name}={value!r} must be a number") from None
    if number < 0:
        raise ConfigurationError(f"URL option {name}={value!r} must not be negative")
    return number


def parse_url(url: str) -> PostgresOptions:
    """Split a ``postgresql://`` URL into :class:`PostgresOptions`.

    The broker's own query parameters are ``schema``, ``notify``, ``auto_migrate``,
    ``poll_interval``, ``command_timeout``, ``pool_min_size``, ``pool_max_size`` and ``statement_cache_size``;
    every other parameter (``sslmode``, ``connect_timeout``, ...) is passed on to asyncpg.
    """
    display = redact_url(url)
    try:
        parts = urlsplit(url)
        hosts = parts.netloc.rpartition("@")[2]
        # Several hosts (h1:5432,h2:5433) are for asyncpg to try in turn; name them as given.
        port: int | None = None if "," in hosts else parts.port or 5432
    except ValueError:
        raise ConfigurationError(
            f"invalid Postgres URL: {display} (percent-encode a '/', '?', '#' or '@' in the password)"
        ) from None
    if parts.scheme.lower() not in _SCHEMES:
        raise ConfigurationError(f"not a Postgres URL (postgresql:// or postgres://): {display}")
    options: dict[str, Any] = {}
    pool_options: dict[str, Any] = {}
    passed_on: list[tuple[str, str]] = []
    host_param = ""
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key == "schema":
            options["schema"] = value
        elif key in ("notify", "auto_migrate"):
            options[key] = _flag(key, value)
        elif key in ("poll_interval", "command_timeout"):
            options[key] = _number(key, value, float)
            if key == "command_timeout" and not 0 < options[key] < float("inf"):
                raise ConfigurationError(f"URL option {key}={value!r} must be a positive number of seconds")
        elif key in ("pool_min_size", "pool_max_size"):
            pool_options[key.removeprefix("pool_")] = _number(key, value, int)
        elif key == "statement_cache_size":
            pool_options[key] = _number(key, value, int)
        else:
            if key == "host":
                host_param = value
            passed_on.append((key, value))
    host = hosts if port is None else parts.hostname or host_param or "localhost"
    user = unquote(parts.username) if parts.username else ""
    database = unquote(parts.path.lstrip("/")) or user or "postgres"
    dsn = _join(parts.scheme, parts.netloc, parts.path, urlencode(passed_on, quote_via=quote))
    return PostgresOptions(
        dsn=dsn,
        secret=unquote(parts.password) if parts.password else None,
        display_url=display,
        target=f"{host}/{database}" if port is None else f"{host}:{port}/{database}",
        pool_options=pool_options,
        **options,
    )


def pick(explicit: _T | None, from_url: _T | None, default: _T) -> _T:
    """An explicit argument beats the URL's option, which beats the default."""
    if explicit is not None:
        return explicit
    return default if from_url is None else from_url
