"""Logging helpers: a formatter that shows each record's ``action`` and job id, and URL redaction.

Every log record asynctask emits carries ``extra={"action": ...}`` (and ``job_id`` where there is
one), so structured handlers can filter on them; :class:`Formatter` prints them as ``key=value``.
"""

from __future__ import annotations

import logging
import sys
from urllib.parse import parse_qsl, urlencode, urlsplit

__all__ = ["Formatter", "configure_logging", "join_url", "redact_url"]

# Query options that carry secrets (libpq's sslpassword too, NATS's token).
_SECRET_PARAMS = frozenset({"password", "sslpassword", "token"})
# Schemes whose user info without a password is a secret token (``nats://s3cret@host``).
_TOKEN_SCHEMES = frozenset({"nats", "tls"})


def redact_url(url: str) -> str:
    """``url`` with any password or token (user info, ``password=``/``token=``) replaced by ``***``.

    >>> redact_url("postgresql://app:s3cret@db:5432/jobs")
    'postgresql://app:***@db:5432/jobs'
    >>> redact_url("redis://:s3cret@cache:6379/0")
    'redis://:***@cache:6379/0'
    >>> redact_url("redis://cache:6379/0?password=s3cret&prefix=app")
    'redis://cache:6379/0?password=***&prefix=app'
    >>> redact_url("nats://s3cret@n1:4222,n2:4222")
    'nats://***@n1:4222,n2:4222'
    """
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if "@" in netloc:
            userinfo, _, hosts = netloc.rpartition("@")
            user, sep, _password = userinfo.partition(":")
            if sep:
                netloc = f"{user}:***@{hosts}"
            elif parts.scheme.lower() in _TOKEN_SCHEMES:
                netloc = f"***@{hosts}"
            else:
                netloc = f"{user}@{hosts}"
        query = parts.query
        if query:
            pairs = parse_qsl(query, keep_blank_values=True)
            query = urlencode([(k, "***" if k.lower() in _SECRET_PARAMS else v) for k, v in pairs], safe="*/")
        return join_url(parts.scheme, netloc, parts.path, query)
    except ValueError:
        # An unparseable URL may hold a password anywhere: show only its scheme.
        return url.partition("://")[0] + "://***"


def join_url(scheme: str, netloc: str, path: str, query: str) -> str:
    """Not urlunsplit: it drops the ``//`` of a URL without a host (``postgresql:///db?host=/run``)."""
    return f"{scheme}://{netloc}{path}" + (f"?{query}" if query else "")


class Formatter(logging.Formatter):
    """``time LEVEL logger: message action=... job_id=...``."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        extras = [f"{key}={getattr(record, key)}" for key in ("action", "job_id") if hasattr(record, key)]
        return f"{text} {' '.join(extras)}" if extras else text


def configure_logging(level: str | int = "INFO") -> None:
    """Send asynctask's logs to stderr with :class:`Formatter` (used by the CLI)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(Formatter())
    root = logging.getLogger("asynctask")
    root.handlers[:] = [handler]
    root.setLevel(level.upper() if isinstance(level, str) else level)
    root.propagate = False
