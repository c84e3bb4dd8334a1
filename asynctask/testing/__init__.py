"""Testing your tasks: a kit in the spirit of Oban.Testing and River's ``rivertest``.

* :func:`drain` runs a worker until nothing is ready, running or due (moving a
  :class:`FakeClock` through delays and retry backoffs) and returns the jobs it finished;
* :func:`perform` calls one handler with a real :class:`~asynctask.JobCtx`, without a broker,
  and returns its result (or raises); a :class:`Recorder` keeps what it saved and spawned;
* :func:`published` / :func:`assert_published` tell what was published;
* ``pytest -p asynctask.testing.plugin`` adds the ``asynctask_app`` and ``asynctask_clock``
  fixtures (:mod:`asynctask.testing.plugin`).

:class:`FakeClock` and :func:`wait_until` are the time helpers the kit (and asynctask's own
tests) use. The broker contract suite is a separate plugin, :mod:`asynctask.testing.contract`.
"""

from __future__ import annotations

from asynctask.testing.assertions import assert_published, published
from asynctask.testing.clock import FakeClock, wait_until
from asynctask.testing.drain import drain
from asynctask.testing.perform import Recorder, perform

__all__ = ["FakeClock", "Recorder", "assert_published", "drain", "perform", "published", "wait_until"]
