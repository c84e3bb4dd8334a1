"""Brokers, chosen by URL scheme.

>>> broker_from_url("memory://")
<MemoryBroker memory:// jobs=0>
"""

from __future__ import annotations

import importlib
import time
from typing import Any

from asynctask.brokers.base import Broker, Capabilities, Clock
from asynctask.brokers.memory import MemoryBroker
from asynctask.errors import ConfigurationError, MissingExtra

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
        raise ConfigurationError(f"broker URL has no scheme: {url!r} (try memory://)")
    scheme = scheme.lower()
    if scheme == "memory":
        return MemoryBroker.from_url(url, clock=clock)
    try:
        module_name, class_name, extra, driver = _SCHEMES[scheme]
    except KeyError:
        known = ", ".join(sorted({"memory", *_SCHEMES}))
        raise ConfigurationError(f"unknown broker URL scheme {scheme!r}; known: {known}") from None
    require(driver, extra)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            raise ConfigurationError(f"the {scheme}:// broker is not available in this version") from exc
        raise
    broker: Broker = getattr(module, class_name).from_url(url, clock=clock)
    return broker
