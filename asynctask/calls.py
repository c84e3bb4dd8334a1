"""Calling user code that may be an ``async def`` or a plain ``def``.

Everywhere asynctask takes user code to run in a job (a handler, ``on_finish``, a pipeline step,
an incremental step, a hook), a coroutine function is awaited on the event loop and a plain
function runs in the worker's thread pool (:meth:`asynctask.JobCtx.run_sync`). Generators are
neither, and are refused when the code is registered.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable
from typing import Any

__all__ = ["check_callable", "invoke", "is_async_callable"]


def is_async_callable(fn: object) -> bool:
    """Whether calling ``fn`` returns a coroutine (an ``async def``, a partial of one, or an object
    whose ``__call__`` is one)."""
    while isinstance(fn, functools.partial):
        fn = fn.func
    if inspect.iscoroutinefunction(fn):
        return True
    # An object with an async __call__ (ruff B004 is about callable() checks, not this).
    call = None if inspect.isroutine(fn) else getattr(type(fn), "__call__", None)  # noqa: B004
    return call is not None and inspect.iscoroutinefunction(call)


def check_callable(fn: object, what: str) -> None:
    """Refuse what cannot run as ``what``: not callable, or a (sync or async) generator function."""
    if not callable(fn):
        raise TypeError(f"{what} must be a function, got {fn!r}")
    if inspect.isasyncgenfunction(fn) or inspect.isgeneratorfunction(fn):
        raise TypeError(f"{what} {fn!r} must be an `async def` or a `def` function, not a generator")


async def invoke(run_sync: Callable[..., Awaitable[Any]], fn: Callable[..., Any], *args: Any) -> Any:
    """``await fn(*args)`` for async code; ``await run_sync(fn, *args)`` (a thread) for sync code."""
    if is_async_callable(fn):
        return await fn(*args)
    return await run_sync(fn, *args)
