"""How values look on the dashboard: times, ages, durations, and stored bytes made readable.

Pure functions (the current time is a parameter), registered as template globals. Everything
they return is plain text: the templates escape it.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import msgspec

__all__ = ["ago", "duration", "first_line", "readable", "when"]

#: Bytes shown before a stored value is cut (the page stays light; the CLI shows everything).
MAX_SHOWN = 64 * 1024


def when(ts: float | None) -> str:
    """A POSIX time as ``2026-11-23 03:01:02.345 UTC`` (``-`` for none)."""
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + " UTC"


def duration(seconds: float | None) -> str:
    """A span as ``850 ms``, ``12.5 s``, ``7 min 3 s``, ``5 h 2 min`` or ``3 d 4 h``.

    >>> [duration(s) for s in (0.85, 12.5, 423, 18120, 273600)]
    ['850 ms', '12.5 s', '7 min 3 s', '5 h 2 min', '3 d 4 h']
    """
    if seconds is None:
        return "-"
    seconds = abs(seconds)
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h"


def ago(ts: float | None, now: float) -> str:
    """``12.5 s ago`` or ``in 3 min 0 s``, relative to ``now``.

    >>> ago(100.0, 112.5), ago(300.0, 120.0), ago(None, 1.0)
    ('12.5 s ago', 'in 3 min 0 s', '-')
    """
    if ts is None:
        return "-"
    delta = now - ts
    return f"{duration(delta)} ago" if delta >= 0 else f"in {duration(delta)}"


def first_line(text: str | None, width: int = 140) -> str:
    """The last non-empty line of an error (a traceback ends with the exception), shortened."""
    if not text:
        return ""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    line = lines[-1].strip() if lines else ""
    return line if len(line) <= width else line[: width - 1] + "…"


def readable(data: bytes | None) -> str | None:
    """Stored bytes (payload, result, state) as text: indented JSON, else UTF-8, else hex.

    >>> print(readable(b'{"to":"ada","n":[1,2]}'))
    {
      "to": "ada",
      "n": [
        1,
        2
      ]
    }
    >>> readable(b"\\xff\\x00")
    '(2 bytes, not text) ff00'
    """
    if data is None:
        return None
    shown, cut = data[:MAX_SHOWN], len(data) > MAX_SHOWN
    suffix = f"\n… ({len(data) - MAX_SHOWN} more bytes)" if cut else ""
    if not cut:
        try:
            value: Any = msgspec.json.decode(data)
        except msgspec.DecodeError:
            pass
        else:
            return json.dumps(value, indent=2, ensure_ascii=False)
    try:
        return shown.decode("utf-8") + suffix
    except UnicodeDecodeError:
        return f"({len(data)} bytes, not text) {shown[:256].hex()}" + ("…" if len(data) > 256 else "")
