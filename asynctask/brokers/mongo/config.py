"""Reading a ``mongodb://`` URL: asynctask's own options out, the rest for PyMongo, passwords hidden.

>>> opts = parse_url("mongodb://app:s3cret@db1,db2/jobs?replicaSet=rs0&prefix=billing")
>>> opts.display_url
'mongodb://app:***@db1,db2/jobs?replicaSet=rs0&prefix=billing'
>>> opts.database, opts.prefix, opts.target
('jobs', 'billing', 'db1,db2/jobs')
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

from asynctask.errors import ConfigurationError
from asynctask.log import join_url, redact_url

__all__ = ["DEFAULT_DATABASE", "DEFAULT_PREFIX", "MongoOptions", "parse_url", "validate_prefix"]

DEFAULT_DATABASE = "asynctask"
DEFAULT_PREFIX = "asynctask"

_SCHEMES = frozenset({"mongodb", "mongodb+srv"})
_PREFIX = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,63}")
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})
_AUTO = "auto"


@dataclass(frozen=True)
class MongoOptions:
    """What a URL says, split into the broker's options and the URI handed to PyMongo."""

    #: The URI for ``AsyncMongoClient``, without the broker's own options. Holds the password.
    uri: str = field(repr=False)
    #: The URL with its password redacted, for logs, reprs and errors.
    display_url: str
    #: ``hosts/database``, for error messages.
    target: str
    database: str = DEFAULT_DATABASE
    prefix: str = DEFAULT_PREFIX
    #: ``None``: detect at open.
    transactions: bool | None = None
    change_streams: bool | None = None
    poll_interval: float | None = None
    ttl_margin: float | None = None
    #: The password, if any: scrubbed from error text.
    secret: str | None = field(default=None, repr=False)


def validate_prefix(prefix: str) -> str:
    """A collection prefix: letters, digits, ``_`` and ``-`` (collections are ``<prefix>.jobs``)."""
    if not isinstance(prefix, str) or not _PREFIX.fullmatch(prefix):
        raise ConfigurationError(
            f"invalid MongoDB collection prefix {prefix!r}: use 1-64 letters, digits, '_' or '-'"
        )
    return prefix


def _tristate(name: str, value: str) -> bool | None:
    lowered = value.lower()
    if lowered == _AUTO:
        return None
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ConfigurationError(f"URL option {name}={value!r} must be true, false or auto")


def _seconds(name: str, value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise ConfigurationError(f"URL option {name}={value!r} must be a number of seconds") from None
    if not number >= 0 or number == float("inf"):
        raise ConfigurationError(f"URL option {name}={value!r} must be a finite, non-negative number")
    return number


def parse_url(url: str) -> MongoOptions:
    """Split a ``mongodb://`` or ``mongodb+srv://`` URL into :class:`MongoOptions`.

    The broker's own query options are ``prefix``, ``transactions`` and ``change_streams``
    (``true``, ``false`` or ``auto``), ``poll_interval`` and ``ttl_margin`` (seconds); every
    other option (``replicaSet``, ``w``, ``tls``, ``authSource``...) is passed on to PyMongo.
    The database is the URL's path (default ``asynctask``).
    """
    display = redact_url(url)
    try:
        parts = urlsplit(url)
        query = parse_qsl(parts.query, keep_blank_values=True)
    except ValueError:
        raise ConfigurationError(f"invalid MongoDB URL: {display}") from None
    if parts.scheme.lower() not in _SCHEMES:
        raise ConfigurationError(f"not a MongoDB URL (mongodb:// or mongodb+srv://): {display}")
    hosts = parts.netloc.rpartition("@")[2]
    if not hosts:
        raise ConfigurationError(f"MongoDB URL has no host: {display}")
    options: dict[str, Any] = {}
    passed_on: list[tuple[str, str]] = []
    for key, value in query:
        if key == "prefix":
            options["prefix"] = validate_prefix(value)
        elif key in ("transactions", "change_streams"):
            options[key] = _tristate(key, value)
        elif key in ("poll_interval", "ttl_margin"):
            options[key] = _seconds(key, value)
        else:
            passed_on.append((key, value))
    database = unquote(parts.path.lstrip("/")) or DEFAULT_DATABASE
    if any(c in database for c in '/\\. "$\x00') or len(database) > 63:
        raise ConfigurationError(f"invalid MongoDB database name {database!r} in {display}")
    password = parts.netloc.rpartition("@")[0].partition(":")[2] if "@" in parts.netloc else ""
    uri = join_url(parts.scheme, parts.netloc, parts.path, urlencode(passed_on, quote_via=quote))
    return MongoOptions(
        uri=uri,
        display_url=display,
        target=f"{hosts}/{database}",
        database=database,
        secret=unquote(password) or None,
        **options,
    )
