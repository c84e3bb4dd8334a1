"""The worker lifespan: what a worker sets up before its first job and tears down after its last.

Registered with :meth:`Registry.lifespan <asynctask.registry.Registry.lifespan>`; entered and
exited by the runtime (:mod:`asynctask.runtime.lifespan`). This module only checks and normalises
what was registered.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from asynctask.errors import ConfigurationError

__all__ = ["LifespanFactory", "as_factory"]

#: What the runtime calls, once per worker: returns the async context manager to enter.
LifespanFactory = Callable[[], AbstractAsyncContextManager[Any]]


def as_factory(fn: Callable[[], Any]) -> LifespanFactory:
    """``fn`` as a factory of async context managers.

    ``fn`` is an async generator function that yields once (it is wrapped with
    :func:`contextlib.asynccontextmanager`), or a callable with no arguments that returns an async
    context manager (a function decorated with ``@asynccontextmanager``, a class).
    """
    if not callable(fn):
        raise ConfigurationError(f"a worker lifespan must be callable, got {fn!r}")
    name = getattr(fn, "__qualname__", repr(fn))
    try:
        required = [
            p
            for p in inspect.signature(fn).parameters.values()
            if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        ]
    except (TypeError, ValueError):  # no signature to read (some builtins): let the call tell
        required = []
    if required:
        raise ConfigurationError(f"the worker lifespan {name} must take no arguments")
    if inspect.isasyncgenfunction(fn):
        return asynccontextmanager(fn)
    if inspect.iscoroutinefunction(fn) or inspect.isgeneratorfunction(fn):
        raise ConfigurationError(
            f"the worker lifespan {name} must be an async generator (set up, `yield resources`, "
            "tear down) or return an async context manager"
        )
    return fn
