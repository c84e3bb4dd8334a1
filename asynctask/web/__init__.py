"""The web dashboard: see and operate jobs, queues, workers and periodic tasks.

>>> from asynctask.web import create_app                       # doctest: +SKIP
>>> api.mount("/tasks", create_app(app, read_only=False, auth=check_user))

``asynctask web APP --port 8000`` serves it alone. It needs the ``web`` extra
(``pip install 'asynctask[web]'``: Starlette, Jinja2, uvicorn); every asset ships in the package,
so it works without internet access. See :func:`asynctask.web.app.create_app`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from asynctask.brokers import require

if TYPE_CHECKING:
    from asynctask.web.app import create_app

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    # Imported on first use, so that `asynctask --help` works without the extra installed and a
    # missing extra is reported by name.
    if name == "create_app":
        require("starlette", "web")
        require("jinja2", "web")
        from asynctask.web.app import create_app

        return create_app
    raise AttributeError(f"module 'asynctask.web' has no attribute {name!r}")
