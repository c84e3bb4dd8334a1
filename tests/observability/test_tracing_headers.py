"""The trace context in job headers: read and written as the global propagator would.

:class:`~asynctask.tracing.Tracing` reads and writes a canonical ``traceparent`` itself when the
global propagator is OpenTelemetry's default (it is much cheaper per job); these tests hold that
shortcut to the propagator's results, and check that any other propagator does the work itself.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry import baggage, context, propagate, trace
from opentelemetry.context import Context
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.propagators.textmap import (
    CarrierT,
    Getter,
    Setter,
    TextMapPropagator,
    default_getter,
    default_setter,
)
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from asynctask import App, JobCtx
from asynctask.testing.contract.suite.helpers import running
from asynctask.tracing import Tracing, instrument

pytestmark = pytest.mark.anyio

TRACE, SPAN = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
HEADERS = [
    {},
    {"user": "u1"},
    {"traceparent": f"00-{TRACE}-{SPAN}-01"},
    {"traceparent": f"00-{TRACE}-{SPAN}-00", "user": "u1"},
    {"traceparent": f"00-{TRACE}-{SPAN}-03"},
    {"traceparent": f"00-{TRACE}-{SPAN}-01", "tracestate": "vendor=a,other=b"},
    {"traceparent": f"00-{TRACE}-{SPAN}-01", "baggage": "user=u1,tenant=t2"},
    {"baggage": "user=u1"},
    {"tracestate": "vendor=a"},
    {"traceparent": f"00-{TRACE.upper()}-{SPAN}-01"},  # invalid: upper case
    {"traceparent": f"00-{'0' * 32}-{SPAN}-01"},  # invalid: zero trace id
    {"traceparent": f"00-{TRACE}-{'0' * 16}-01"},  # invalid: zero span id
    {"traceparent": f"00-{TRACE}-{SPAN}-01-extra"},  # invalid for version 00
    {"traceparent": f"01-{TRACE}-{SPAN}-01-extra"},  # a later version may add fields
    {"traceparent": f"ff-{TRACE}-{SPAN}-01"},  # invalid version
    {"traceparent": f" 00-{TRACE}-{SPAN}-01\t"},  # blanks around it are allowed
    {"traceparent": f"00-{TRACE[:-1]}_-{SPAN}-01"},  # int(..., 16) would accept it
    {"traceparent": "garbage"},
]


def seen(ctx: Context | None) -> tuple[trace.SpanContext, dict[str, object]]:
    """What a context gives a span started in it: its parent, and the baggage."""
    return trace.get_current_span(ctx).get_span_context(), dict(baggage.get_all(ctx))


@pytest.mark.parametrize("headers", HEADERS)
def test_the_parent_read_from_headers_is_the_propagators(headers: dict[str, str]) -> None:
    expected = seen(propagate.extract(headers)) if headers else seen(None)
    assert seen(Tracing(TracerProvider())._parent(headers)) == expected


@pytest.fixture
def tracer() -> Iterator[trace.Tracer]:
    provider = TracerProvider()
    yield provider.get_tracer("tests")
    provider.shutdown()


@pytest.mark.parametrize("with_baggage", [False, True])
@pytest.mark.parametrize("tracestate", [None, "vendor=a"])
def test_the_headers_written_are_the_propagators(
    tracer: trace.Tracer, with_baggage: bool, tracestate: str | None
) -> None:
    parent = propagate.extract(
        {"traceparent": f"00-{TRACE}-{SPAN}-01"} | ({"tracestate": tracestate} if tracestate else {})
    )
    span = tracer.start_span("publish", context=parent)
    token = context.attach(baggage.set_baggage("user", "u 1")) if with_baggage else None
    try:
        expected: dict[str, str] = {"user": "kept"}
        propagate.inject(expected, context=trace.set_span_in_context(span))
        written = {"user": "kept"}
        Tracing(TracerProvider())._inject(written, span)
    finally:
        if token is not None:
            context.detach(token)
    assert written == expected
    assert ("baggage" in written) is with_baggage and ("tracestate" in written) is bool(tracestate)


class Custom(TextMapPropagator):
    """A propagator of another format: one ``x-trace`` header of hex trace id and span id."""

    def extract(
        self, carrier: CarrierT, context: Context | None = None, getter: Getter[CarrierT] = default_getter
    ) -> Context:
        [value] = getter.get(carrier, "x-trace") or [""]
        if not value:
            return context if context is not None else Context()
        trace_id, span_id = (int(part, 16) for part in value.split(":"))
        remote = trace.NonRecordingSpan(trace.SpanContext(trace_id, span_id, True, trace.TraceFlags(1)))
        return trace.set_span_in_context(remote, context)

    def inject(
        self, carrier: CarrierT, context: Context | None = None, setter: Setter[CarrierT] = default_setter
    ) -> None:
        sc = trace.get_current_span(context).get_span_context()
        setter.set(carrier, "x-trace", f"{sc.trace_id:x}:{sc.span_id:x}")

    @property
    def fields(self) -> set[str]:
        return {"x-trace"}


@pytest.fixture(params=["custom", "tracecontext only"])
def propagator(request: pytest.FixtureRequest) -> Iterator[str]:
    textmap: TextMapPropagator = (
        Custom() if request.param == "custom" else CompositePropagator([TraceContextTextMapPropagator()])
    )
    previous = propagate.get_global_textmap()
    propagate.set_global_textmap(textmap)
    yield request.param
    propagate.set_global_textmap(previous)


async def test_another_global_propagator_does_the_work(app: App, propagator: str) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    instrument(app, tracer_provider=provider)

    @app.task
    async def headers(ctx: JobCtx) -> dict[str, str]:
        return dict(ctx.headers)

    async with running(app):
        handle = await app.publish(headers)
        carried = await handle.result(timeout=10)
    provider.shutdown()
    assert ("x-trace" in carried) is (propagator == "custom")
    assert ("traceparent" in carried) is (propagator != "custom")
    spans = exporter.get_finished_spans()
    [producer] = [s for s in spans if s.kind is trace.SpanKind.PRODUCER]
    [consumer] = [s for s in spans if s.kind is trace.SpanKind.CONSUMER]
    assert consumer.parent is not None and consumer.parent.span_id == producer.context.span_id
    assert consumer.context.trace_id == producer.context.trace_id
