"""What the client and the runtime report, for metrics, tracing and health to observe.

An :class:`Observer` overrides the hooks it cares about; :class:`Events` holds the observers of a
registry (``app.events``, seen by every publish and every worker of the app) or of one worker
(``worker.events``, which adds its own to the app's). The core never imports Prometheus or
OpenTelemetry: :mod:`asynctask.metrics`, :mod:`asynctask.tracing` and
:mod:`asynctask.runtime.health` subscribe here.

With nobody subscribed, the cost is a truth test per call site (``if events:``) and the worker's
broker is not wrapped at all.

Hooks are plain functions called on the event loop, in the task doing the work (an attempt's
hooks run in the task that runs its handler, so a hook may set context variables the handler
sees). They must be quick and must not block. An exception raised by a hook is logged and
ignored: observing never changes what happens to a job.

>>> class Count(Observer):
...     started = 0
...     def attempt_started(self, job: Job) -> None:
...         self.started += 1
>>> events = Events()
>>> bool(events)
False
>>> events.subscribe(Count())
>>> bool(events)
True
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

from asynctask.models import Job, NewJob, Outcome

__all__ = ["BROKER_HOOKS", "HOOKS", "Events", "Finish", "Observer"]

log = logging.getLogger("asynctask.events")

#: Called once a publish is over: with the exception that ended it, or ``None``.
Finish = Callable[[BaseException | None], None]


class Observer:
    """The hooks, each a no-op here; subclass and override what you need."""

    def observes(self, hook: str) -> bool:
        """Whether to call ``hook`` (a name of :data:`HOOKS`) on this observer.

        Asked when the observer is subscribed, and again by each worker when it starts; the
        default is whether the class overrides the hook. Return ``False`` to cost nothing while
        there is nothing to do (tracing without a tracer provider leaves the attempts alone).
        """
        return getattr(type(self), hook) is not getattr(Observer, hook)

    # --- the client (and the runtime when it publishes) -------------------------------------------

    def publishing(self, jobs: list[NewJob]) -> Finish | None:
        """``jobs`` are about to be published; return a callback to learn when that is over.

        The observer may replace items of ``jobs`` (with ``msgspec.structs.replace``) to add
        headers; what it puts there is stored with the job. Called for every publish, the jobs
        of groups and chains, and subtasks (which a handler spawns now and the worker enqueues
        with its outcome: their callback is called at once).
        """
        return None

    def published(self, jobs: Sequence[NewJob], created: Sequence[bool]) -> None:
        """``jobs`` were handed to the broker; ``created[i]`` is ``False`` for an id that existed.

        Reported by the client's publishes and by the worker for what it enqueues itself:
        periodic ticks, and the subtasks or next chain link of an outcome the broker applied.
        """

    # --- the runtime ------------------------------------------------------------------------------

    def worker_started(self, worker_id: str, concurrency: int) -> None:
        """A worker started claiming, with room for ``concurrency`` handlers at once."""

    def worker_stopped(self, worker_id: str, concurrency: int) -> None:
        """A worker stopped."""

    def jobs_claimed(self, queue: str, jobs: Sequence[Job]) -> None:
        """A claim returned ``jobs`` (never empty) from ``queue``."""

    def attempt_started(self, job: Job) -> None:
        """An attempt of ``job`` starts, in the task that will run its handler."""

    def attempt_finished(
        self, job: Job, outcome: Outcome | None, error: BaseException | None, seconds: float
    ) -> None:
        """The attempt ended after ``seconds``, in the task that ran it.

        ``outcome`` is what the worker will report (``None``: the lease was lost, nothing is
        reported); ``error`` is what the handler raised, if anything.
        """

    def outcomes_reported(self, outcomes: Sequence[Outcome], applied: Sequence[bool]) -> None:
        """The broker answered a completion: ``applied[i]`` is ``False`` when ``outcomes[i]`` was
        discarded (its lease had passed to another worker, or the job was deleted)."""

    def broker_call(self, operation: str, seconds: float, error: BaseException | None) -> None:
        """The worker made one broker call (``claim``, ``complete``, ``extend_leases``, ...)."""


#: Every hook of :class:`Observer`.
HOOKS = (
    "publishing",
    "published",
    "worker_started",
    "worker_stopped",
    "jobs_claimed",
    "attempt_started",
    "attempt_finished",
    "outcomes_reported",
    "broker_call",
)
#: The hooks fed by the worker's broker calls: with none of them overridden, it is not wrapped.
BROKER_HOOKS = frozenset({"published", "jobs_claimed", "outcomes_reported", "broker_call"})


class Events:
    """The observers of one registry or worker, and the fan-out of every hook to them.

    Each hook is dispatched only to the observers that override it, so an observer pays for the
    hooks it uses: :meth:`wants` tells the runtime which call sites to skip altogether.
    """

    __slots__ = ("_hooks", "observers")

    def __init__(self, observers: Iterable[Observer] = ()) -> None:
        self.observers: tuple[Observer, ...] = ()
        self._hooks: dict[str, tuple[Callable[..., Any], ...]] = {}
        self._set(tuple(observers))

    def _set(self, observers: tuple[Observer, ...]) -> None:
        self.observers = observers
        self._hooks = {name: tuple(getattr(o, name) for o in observers if o.observes(name)) for name in HOOKS}
        # Unwound in reverse, so observers that nest (a tracing span) close in order.
        self._hooks["attempt_finished"] = self._hooks["attempt_finished"][::-1]

    def __bool__(self) -> bool:
        return bool(self.observers)

    def __repr__(self) -> str:
        return f"<Events {', '.join(type(o).__name__ for o in self.observers) or 'none'}>"

    def wants(self, *hooks: str) -> bool:
        """Whether any observer overrides one of ``hooks``."""
        return any(self._hooks[name] for name in hooks)

    def subscribe(self, observer: Observer) -> None:
        """Add ``observer``; a worker sees it from its next start."""
        if observer not in self.observers:
            self._set((*self.observers, observer))

    def unsubscribe(self, observer: Observer) -> None:
        self._set(tuple(o for o in self.observers if o is not observer))

    def joined(self, other: Events) -> Events:
        """These observers, then ``other``'s."""
        return Events((*self.observers, *(o for o in other.observers if o not in self.observers)))

    # --- publishing ---------------------------------------------------------------------------------

    def publishing(self, jobs: list[NewJob]) -> Finish:
        """Tell every observer ``jobs`` are about to be published; returns the one callback to
        call when that is over."""
        finishers: list[Finish] = []
        for hook in self._hooks["publishing"]:
            try:
                finish = hook(jobs)
            except Exception:
                _failed(hook)
                continue
            if finish is not None:
                finishers.append(finish)

        def finish_all(error: BaseException | None) -> None:
            for finish in finishers:
                try:
                    finish(error)
                except Exception:
                    _failed(finish)

        return finish_all

    def prepare(self, jobs: list[NewJob]) -> None:
        """:meth:`publishing` for jobs that are sent later, with something else (subtasks)."""
        self.publishing(jobs)(None)

    async def publish(
        self, jobs: list[NewJob], enqueue: Callable[[list[NewJob]], Awaitable[list[bool]]]
    ) -> list[bool]:
        """Publish ``jobs`` with ``enqueue`` (the broker's), observed; returns what it returns."""
        finish = self.publishing(jobs)
        try:
            created = await enqueue(jobs)
        except BaseException as exc:
            finish(exc)
            raise
        finish(None)
        self.published(jobs, created)
        return created

    def published(self, jobs: Sequence[NewJob], created: Sequence[bool]) -> None:
        for hook in self._hooks["published"]:
            try:
                hook(jobs, created)
            except Exception:
                _failed(hook)

    # --- the runtime ----------------------------------------------------------------------------------

    def worker_started(self, worker_id: str, concurrency: int) -> None:
        for hook in self._hooks["worker_started"]:
            try:
                hook(worker_id, concurrency)
            except Exception:
                _failed(hook)

    def worker_stopped(self, worker_id: str, concurrency: int) -> None:
        for hook in self._hooks["worker_stopped"]:
            try:
                hook(worker_id, concurrency)
            except Exception:
                _failed(hook)

    def jobs_claimed(self, queue: str, jobs: Sequence[Job]) -> None:
        for hook in self._hooks["jobs_claimed"]:
            try:
                hook(queue, jobs)
            except Exception:
                _failed(hook)

    def attempt_started(self, job: Job) -> None:
        for hook in self._hooks["attempt_started"]:
            try:
                hook(job)
            except Exception:
                _failed(hook)

    def attempt_finished(
        self, job: Job, outcome: Outcome | None, error: BaseException | None, seconds: float
    ) -> None:
        for hook in self._hooks["attempt_finished"]:  # in reverse order (see _set)
            try:
                hook(job, outcome, error, seconds)
            except Exception:
                _failed(hook)

    def outcomes_reported(self, outcomes: Sequence[Outcome], applied: Sequence[bool]) -> None:
        for hook in self._hooks["outcomes_reported"]:
            try:
                hook(outcomes, applied)
            except Exception:
                _failed(hook)

    def broker_call(self, operation: str, seconds: float, error: BaseException | None) -> None:
        for hook in self._hooks["broker_call"]:
            try:
                hook(operation, seconds, error)
            except Exception:
                _failed(hook)


_ACTION = {"action": "observer_error"}


def _failed(hook: Callable[..., Any]) -> None:
    log.exception("observer hook %s raised (ignored)", getattr(hook, "__qualname__", hook), extra=_ACTION)
