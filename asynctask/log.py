"""Logging helpers: a formatter that shows each record's ``action`` and job id, and URL redaction.

Every log record asynctask emits carries ``extra={"action": ...}`` (and ``job_id`` where there is
one), so structured handlers can filter on them; :class:`Formatter` prints them as ``key=value``.
"""

from __future__ import annotations

import logging
import re
import sys

__all__ = ["Formatter", "configure_logging", "redact_url"]

_PASSWORD = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.-]*://[^:/?#@]*:)(?P<password>[^@/?#]*)@")


def redact_url(url: str) -> str:
    """Replace the password in a URL with ``***``.

    >>> redact_url("postgresql://app:s3cret@db:5432/jobs")
    'postgresql://app:***@db:5432/jobs'
    >>> redact_url("redis://:s3cret@cache:6379/0")
    'redis://:***@cache:6379/0'
    """
    return _PASSWORD.sub(r"\g<head>***@", url)


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
