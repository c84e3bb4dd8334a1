"""Logging helpers: text and JSON formatters for asynctask's records, and URL redaction.

Every log record asynctask emits carries ``extra={"action": ...}``, and where the runtime knows
them ``job_id``, ``task``, ``queue``, ``attempt`` and ``worker``, so structured handlers can
filter on them. :class:`Formatter` prints ``action`` and ``job_id`` as ``key=value``;
:class:`JsonFormatter` prints one JSON object per line with every field.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Literal
from urllib.parse import parse_qsl, urlencode, urlsplit

__all__ = ["FIELDS", "Formatter", "JsonFormatter", "configure_logging", "join_url", "redact_url"]

#: The structured fields of asynctask's records (``None`` where a record has none).
FIELDS = ("action", "job_id", "task", "queue", "attempt", "worker")

# Query options that carry secrets (libpq's sslpassword; MongoDB's key-file password and
# authMechanismProperties, which can hold an AWS session token; NATS's token).
_SECRET_PARAMS = frozenset(
    {"password", "sslpassword", "tlscertificatekeyfilepassword", "authmechanismproperties", "token"}
)
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

    A password holding an unencoded ``/``, ``?`` or ``#`` ends the host part early for a URL
    parser; so when an ``@`` comes after what it calls the host, everything up to the last ``@``
    is taken as user info (safe rather than pretty: an ``@`` in a query value is hidden too),
    and a URL without a scheme shows only what follows its last ``@``:

    >>> redact_url("postgresql://u:Ab12/Secret@host/db")
    'postgresql://u:***@host/db'
    >>> redact_url("user:secret@host/db")
    '***@host/db'
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        return "***@" + url.rpartition("@")[2] if "@" in url else url
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if "@" not in netloc and "@" in rest:
            # The password ran past a '/', '?' or '#' (no broker URL has an '@' after its
            # hosts otherwise): cut at the last '@' instead.
            userinfo, _, after = rest.rpartition("@")
            user = userinfo.partition(":")[0]
            if any(c in user for c in "/?#"):
                user = ""
            return redact_url(f"{scheme}://{user}:***@{after}")
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
        return scheme + "://***"


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


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``time`` (UTC, ISO 8601), ``level``, ``logger``, ``message``,
    then every field of :data:`FIELDS` (``null`` when the record has none), and ``exception``
    when there is one. Log shippers read it as it is."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in FIELDS:
            data[key] = getattr(record, key, None)
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            data["stack"] = self.formatStack(record.stack_info)
        return json.dumps(data, default=str)


def configure_logging(level: str | int = "INFO", *, fmt: Literal["text", "json"] = "text") -> logging.Handler:
    """Send logs to stderr as ``fmt`` (used by the CLI); returns the handler it installed.

    The handler goes on the root logger, so the app's own records come out the same way, and the
    level is set there. Calling it again replaces the handler it installed before. It changes no
    other logger: in particular it never sets ``propagate`` (apps that configure logging
    themselves run the CLI with ``--no-configure-logging``).
    """
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else Formatter())
    handler.set_name(_HANDLER_NAME)
    root = logging.getLogger()
    root.handlers[:] = [h for h in root.handlers if h.get_name() != _HANDLER_NAME] + [handler]
    root.setLevel(level.upper() if isinstance(level, str) else level)
    return handler


_HANDLER_NAME = "asynctask.cli"
