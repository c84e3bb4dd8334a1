"""OpenTelemetry tracing (extra ``otel``): a trace continues from ``publish`` into the handler.

>>> from asynctask.tracing import instrument
>>> instrument(app)                  # doctest: +SKIP  (once, where the app is defined)

Following the messaging semantic conventions:

* each published job gets a PRODUCER span ``publish <queue>``, child of the publisher's current
  span, covering the broker round trip; its context is written into the job's headers
  (``traceparent``, ``tracestate``: the W3C trace context, through the global propagator);
* each attempt runs in a CONSUMER span ``process <queue>`` whose parent is that PRODUCER span, so
  the handler's own spans (and its database calls, HTTP requests...) join the publisher's trace.
  A retried job has one such span per attempt. An exception from the handler is recorded on the
  span, whose status is ``ERROR`` when the attempt failed or will be retried;
* a subtask spawned by a handler, the members of a group and the links of a chain are published
  the same way, so they join the trace of their parent (or of the group's or chain's publish).

Attributes: ``messaging.system`` (``asynctask``), ``messaging.operation.type`` (``send`` /
``process``), ``messaging.operation.name`` (``publish`` / ``process``),
``messaging.destination.name`` (the queue), ``messaging.message.id`` (the job id), and
``asynctask.task``, ``asynctask.attempt``, ``asynctask.outcome``.

Cost: without :func:`instrument`, nothing at all. Instrumented without a configured tracer
provider (no ``tracer_provider=`` and no global provider set): nothing for a worker (it checks
when it starts: configure the SDK before the worker starts, as ``opentelemetry-instrument`` or
code in the app's module does), one check per publish, and no header written.
"""

from __future__ import annotations

from contextvars import ContextVar, Token

import msgspec

from asynctask.brokers import require
from asynctask.events import Finish, Observer
from asynctask.models import Job, NewJob, Outcome, OutcomeKind
from asynctask.registry import Registry

require("opentelemetry.trace", "otel")

from opentelemetry import context, propagate, trace  # noqa: E402

__all__ = ["Tracing", "instrument"]

SYSTEM = "asynctask"
#: Outcomes after which the attempt's span has status ERROR.
_ERRORS = frozenset({OutcomeKind.FAILED, OutcomeKind.RETRY})
_OUTCOMES = {
    OutcomeKind.SUCCEEDED: "succeeded",
    OutcomeKind.FAILED: "failed",
    OutcomeKind.CANCELLED: "cancelled",
    OutcomeKind.RETRY: "retried",
    OutcomeKind.RELEASE: "released",
    OutcomeKind.PAUSE: "paused",
}


def instrument(app: Registry, *, tracer_provider: trace.TracerProvider | None = None) -> Tracing:
    """Trace ``app``'s publishes and the attempts of its workers; returns the observer.

    ``tracer_provider`` defaults to the global one, looked up at each use, so the SDK may be
    configured after this call. Instrumenting twice is harmless (the first stays).
    """
    for observer in app.events.observers:
        if isinstance(observer, Tracing):
            return observer
    tracing = Tracing(tracer_provider)
    app.events.subscribe(tracing)
    return tracing


class Tracing(Observer):
    """The observer :func:`instrument` subscribes; see the module docstring."""

    def __init__(self, tracer_provider: trace.TracerProvider | None = None) -> None:
        self._fixed = tracer_provider.get_tracer(__name__) if tracer_provider is not None else None
        self._provider: trace.TracerProvider | None = None
        self._tracer: trace.Tracer | None = None
        #: The running attempt's span and the token that restores the context, per task.
        self._active: ContextVar[tuple[trace.Span, Token[context.Context]] | None] = ContextVar(
            "asynctask_tracing_attempt", default=None
        )

    def observes(self, hook: str) -> bool:
        # A worker asks when it starts: without a tracer provider then, its attempts are not
        # traced (and cost nothing). Publishes look for a provider each time.
        if hook in ("attempt_started", "attempt_finished"):
            return self.tracer() is not None
        return super().observes(hook)

    def tracer(self) -> trace.Tracer | None:
        """The tracer to use now, or ``None`` while no tracer provider is configured."""
        if self._fixed is not None:
            return self._fixed
        provider = trace.get_tracer_provider()
        if provider is not self._provider:
            self._provider = provider
            unset = isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider)
            self._tracer = None if unset else provider.get_tracer(__name__)
        return self._tracer

    # --- publishing -------------------------------------------------------------------------------

    def publishing(self, jobs: list[NewJob]) -> Finish | None:
        tracer = self.tracer()
        if tracer is None:
            return None
        spans = []
        for i, job in enumerate(jobs):
            span = tracer.start_span(
                f"publish {job.queue}",
                kind=trace.SpanKind.PRODUCER,
                attributes={
                    "messaging.system": SYSTEM,
                    "messaging.operation.type": "send",
                    "messaging.operation.name": "publish",
                    "messaging.destination.name": job.queue,
                    "messaging.message.id": job.id,
                    "asynctask.task": job.task,
                },
            )
            headers = dict(job.headers)
            propagate.inject(headers, context=trace.set_span_in_context(span))
            jobs[i] = msgspec.structs.replace(job, headers=headers)
            spans.append(span)

        def finish(error: BaseException | None) -> None:
            for span in spans:
                if error is not None:
                    span.record_exception(error)
                    span.set_status(trace.Status(trace.StatusCode.ERROR, _describe(error)))
                span.end()

        return finish

    # --- attempts -----------------------------------------------------------------------------------

    def attempt_started(self, job: Job) -> None:
        tracer = self.tracer()
        if tracer is None:
            return
        parent = propagate.extract(job.headers) if job.headers else None
        span = tracer.start_span(
            f"process {job.queue}",
            context=parent,
            kind=trace.SpanKind.CONSUMER,
            attributes={
                "messaging.system": SYSTEM,
                "messaging.operation.type": "process",
                "messaging.operation.name": "process",
                "messaging.destination.name": job.queue,
                "messaging.message.id": job.id,
                "asynctask.task": job.task,
                "asynctask.attempt": job.attempts,
            },
        )
        # The handler runs in this task next: its spans (and its publishes) are children of this one.
        token = context.attach(trace.set_span_in_context(span))
        self._active.set((span, token))

    def attempt_finished(
        self, job: Job, outcome: Outcome | None, error: BaseException | None, seconds: float
    ) -> None:
        active = self._active.get()
        if active is None:
            return
        self._active.set(None)
        span, token = active
        try:
            kind = outcome.kind if outcome is not None else None
            span.set_attribute("asynctask.outcome", _OUTCOMES[kind] if kind is not None else "lost")
            if error is not None:
                span.record_exception(error)
            if kind in _ERRORS:
                span.set_status(trace.Status(trace.StatusCode.ERROR, _describe(error, outcome)))
            span.end()
        finally:
            context.detach(token)


def _describe(error: BaseException | None, outcome: Outcome | None = None) -> str:
    if error is not None:
        return f"{type(error).__name__}: {error}"
    if outcome is not None and outcome.error:
        return outcome.error.strip().splitlines()[-1]
    return "failed"
