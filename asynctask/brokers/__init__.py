"""Brokers, chosen by URL scheme.

>>> broker_from_url("memory://")
<MemoryBroker memory:// jobs=0>
"""

from __future__ import annotations

import importlib
import importlib.metadata
import time
from typing import Any

from asynctask.brokers.base import Broker, Capabilities, Clock
from asynctask.brokers.memory import MemoryBroker
from asynctask.errors import ConfigurationError, MissingExtra
from asynctask.log import redact_url

__all__ = ["Broker", "Capabilities", "Clock", "MemoryBroker", "broker_from_url"]

# scheme -> (module, class, the extra that installs its driver, the driver's import name)
_SCHEMES: dict[str, tuple[str, str, str, str]] = {
    "postgresql": ("asynctask.brokers.postgres", "PostgresBroker", "postgres", "asyncpg"),
    "postgres": ("asynctask.brokers.postgres", "PostgresBroker", "postgres", "asyncpg"),
    "redis": ("asynctask.brokers.redis", "RedisBroker", "redis", "redis"),
    "rediss": ("asynctask.brokers.redis", "RedisBroker", "redis", "redis"),
    "mongodb": ("asynctask.brokers.mongo", "MongoBroker", "mongo", "pymongo"),
    "mongodb+srv": ("asynctask.brokers.mongo", "MongoBroker", "mongo", "pymongo"),
    "nats": ("asynctask.brokers.nats", "NatsBroker", "nats", "nats"),
    "tls": ("asynctask.brokers.nats", "NatsBroker", "nats", "nats"),
}
#: Brokers outside this package register a URL scheme as an entry point of this group, e.g. in
#: pyproject.toml: ``[project.entry-points."asynctask.brokers"] mybroker = "mypkg.broker:MyBroker"``.
ENTRY_POINTS = "asynctask.brokers"


def require(module: str, extra: str) -> Any:
    """Import an optional dependency, or say which extra installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtra(
            f"{module} is not installed; install it with: pip install 'asynctask[{extra}]'"
        ) from exc


def broker_from_url(url: str, *, clock: Clock = time.time) -> Broker:
    """Build the broker for ``url`` (``memory://``, ``postgresql://``, ``redis://``, ...)."""
    scheme, sep, _ = url.partition("://")
    if not sep:
        # Shown redacted: 'user:secret@host/db' is a URL whose scheme was forgotten.
        raise ConfigurationError(f"broker URL has no scheme: {redact_url(url)!r} (try memory://)")
    scheme = scheme.lower()
    if scheme == "memory":
        return MemoryBroker.from_url(url, clock=clock)
    if scheme not in _SCHEMES:
        return _plugin(scheme).from_url(url, clock=clock)
    module_name, class_name, extra, driver = _SCHEMES[scheme]
    require(driver, extra)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            raise ConfigurationError(f"the {scheme}:// broker is not available in this version") from exc
        raise
    broker: Broker = getattr(module, class_name).from_url(url, clock=clock)
    return broker


def _plugin(scheme: str) -> type[Broker]:
    """The broker class an installed distribution registered for ``scheme`` (see ENTRY_POINTS)."""
    found = [ep for ep in importlib.metadata.entry_points(group=ENTRY_POINTS) if ep.name == scheme]
    if not found:
        known = ", ".join(
            sorted(
                {
                    "memory",
                    *_SCHEMES,
                    *(ep.name for ep in importlib.metadata.entry_points(group=ENTRY_POINTS)),
                }
            )
        )
        raise ConfigurationError(f"unknown broker URL scheme {scheme!r}; known: {known}")
    broker_class: type[Broker] = found[0].load()
    return broker_class
