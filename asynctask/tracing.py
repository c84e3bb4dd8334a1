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

With the SDK configured, a worker's per-job work is mostly the SDK's (starting and ending the
span; even a sampled-out span costs a sampling decision, a span id and a span context), plus
reading the parent from the headers and making the span current. Under OpenTelemetry's default
propagator (W3C trace context, then baggage: ``OTEL_PROPAGATORS`` unset or
``tracecontext,baggage``) a canonical ``traceparent`` alone is read and written here (one regular
expression and two ``int``), about half the cost of the generic propagator path; any other
propagator, a ``tracestate``, baggage or a header in another form goes through the global
propagator as usual, with the same result (tests/observability/test_tracing_headers.py holds the
two paths together). Attributes are passed when the span starts (the sampler sees them, as the
semantic conventions ask); those added at the end are set only on a recording span.
"""

from __future__ import annotations

import re
from contextvars import ContextVar, Token

import msgspec

from asynctask.brokers import require
from asynctask.events import Finish, Observer
from asynctask.models import Job, NewJob, Outcome, OutcomeKind
from asynctask.registry import Registry

require("opentelemetry.trace", "otel")

from opentelemetry import baggage, context, propagate, trace  # noqa: E402
from opentelemetry.baggage.propagation import W3CBaggagePropagator  # noqa: E402
from opentelemetry.propagators.composite import CompositePropagator  # noqa: E402
from opentelemetry.propagators.textmap import TextMapPropagator  # noqa: E402
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator  # noqa: E402

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
_PRODUCER = trace.SpanKind.PRODUCER
_CONSUMER = trace.SpanKind.CONSUMER
#: ``traceparent`` exactly as OpenTelemetry writes it (version 00); any other form (a later
#: version, surrounding blanks, upper case...) is left to the propagator, which knows the rules.
_TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})").fullmatch
#: What the default propagator returns for headers without a trace context or baggage.
_EMPTY = context.Context()
#: The trace flags of a ``traceparent``, by their two hex digits.
_FLAGS = {f"{flags:02x}": trace.TraceFlags(flags) for flags in range(256)}


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
        #: The global propagator last seen, and whether it is OpenTelemetry's default one.
        self._textmap: TextMapPropagator | None = None
        self._w3c = False
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
                kind=_PRODUCER,
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
            self._inject(headers, span)
            jobs[i] = msgspec.structs.replace(job, headers=headers)
            spans.append(span)

        def finish(error: BaseException | None) -> None:
            for span in spans:
                if error is not None and span.is_recording():
                    span.record_exception(error)
                    span.set_status(trace.Status(trace.StatusCode.ERROR, _describe(error)))
                span.end()

        return finish

    # --- attempts -----------------------------------------------------------------------------------

    def attempt_started(self, job: Job) -> None:
        tracer = self._fixed or self.tracer()
        if tracer is None:
            return
        span = tracer.start_span(
            f"process {job.queue}",
            context=self._parent(job.headers),
            kind=_CONSUMER,
            # Given at the start, so that the sampler sees them.
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
        # The handler runs in this task next: its spans (and its publishes) are children of this
        # one, sampled out or not (a sampled-out span still carries the trace id onwards).
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
            if span.is_recording():  # a sampled-out span would ignore all this
                kind = outcome.kind if outcome is not None else None
                span.set_attribute("asynctask.outcome", _OUTCOMES[kind] if kind is not None else "lost")
                if error is not None:
                    span.record_exception(error)
                if kind in _ERRORS:
                    span.set_status(trace.Status(trace.StatusCode.ERROR, _describe(error, outcome)))
            span.end()
        finally:
            context.detach(token)

    # --- the trace context in the headers ---------------------------------------------------------

    def _default_propagator(self) -> bool:
        """Whether the global propagator is OpenTelemetry's default: W3C trace context, then baggage."""
        textmap = propagate.get_global_textmap()
        if textmap is not self._textmap:
            self._textmap = textmap
            # The composite's parts are not public: without them, the propagator does all the work.
            parts = getattr(textmap, "_propagators", None) if type(textmap) is CompositePropagator else None
            self._w3c = parts is not None and [type(p) for p in parts] == [
                TraceContextTextMapPropagator,
                W3CBaggagePropagator,
            ]
        return self._w3c

    def _parent(self, headers: dict[str, str]) -> context.Context | None:
        """The context an attempt's span continues: the one carried in the job's ``headers``.

        With the default propagator and a canonical ``traceparent`` alone (what :meth:`_inject`
        writes without baggage or a ``tracestate``), read here: the same context the propagator
        would return, for a fraction of its cost. Anything else goes through the propagator.
        """
        if not headers:
            return None
        if self._default_propagator() and "baggage" not in headers and "tracestate" not in headers:
            traceparent = headers.get("traceparent")
            if traceparent is None:
                return _EMPTY
            match = _TRACEPARENT(traceparent)
            if match is not None:
                trace_id, span_id = int(match[1], 16), int(match[2], 16)
                if trace_id and span_id:
                    span_context = trace.SpanContext(trace_id, span_id, True, _FLAGS[match[3]])
                    return trace.set_span_in_context(trace.NonRecordingSpan(span_context), _EMPTY)
        return propagate.extract(headers)

    def _inject(self, headers: dict[str, str], span: trace.Span) -> None:
        """Write ``span``'s context into ``headers`` (with the current baggage), as the global
        propagator does; the default propagator's ``traceparent`` alone is written here."""
        sc = span.get_span_context()
        if sc.is_valid and not sc.trace_state and self._default_propagator() and not baggage.get_all():
            headers["traceparent"] = f"00-{sc.trace_id:032x}-{sc.span_id:016x}-{sc.trace_flags:02x}"
        else:
            propagate.inject(headers, context=trace.set_span_in_context(span))


def _describe(error: BaseException | None, outcome: Outcome | None = None) -> str:
    if error is not None:
        return f"{type(error).__name__}: {error}"
    if outcome is not None and outcome.error:
        return outcome.error.strip().splitlines()[-1]
    return "failed"
