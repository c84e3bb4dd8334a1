"""Traces carried from publish to handler through job headers (OpenTelemetry SDK, in memory)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from asynctask import App, JobCtx, JobSpec, JobStatus
from asynctask.events import Events
from asynctask.testing.contract.suite.helpers import running, status_is
from asynctask.tracing import Tracing, instrument

pytestmark = pytest.mark.anyio


class Traced:
    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.tracer = self.provider.get_tracer("tests")

    def spans(self, name: str | None = None, kind: SpanKind | None = None) -> list[ReadableSpan]:
        return [
            s
            for s in self.exporter.get_finished_spans()
            if (name is None or s.name == name) and (kind is None or s.kind is kind)
        ]

    def one(self, name: str, kind: SpanKind | None = None) -> ReadableSpan:
        [span] = self.spans(name, kind)
        return span


@pytest.fixture
def traced() -> Iterator[Traced]:
    traced = Traced()
    yield traced
    traced.provider.shutdown()


def parent_id(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


async def test_the_handler_continues_the_publishers_trace(app: App, traced: Traced) -> None:
    instrument(app, tracer_provider=traced.provider)
    assert app.events.joined(Events()).wants("attempt_started", "attempt_finished")

    @app.task(queue="mail")
    async def send(ctx: JobCtx) -> str:
        with traced.tracer.start_as_current_span("inside the handler"):
            return ctx.headers["traceparent"]

    async with running(app):
        with traced.tracer.start_as_current_span("request") as request:
            handle = await app.publish(send, headers={"user": "u1"})
        assert await handle.result(timeout=10)

    trace_id = request.get_span_context().trace_id
    producer = traced.one("publish mail", SpanKind.PRODUCER)
    consumer = traced.one("process mail", SpanKind.CONSUMER)
    inside = traced.one("inside the handler")
    assert {producer.context.trace_id, consumer.context.trace_id, inside.context.trace_id} == {trace_id}
    assert parent_id(producer) == request.get_span_context().span_id
    assert parent_id(consumer) == producer.context.span_id
    assert parent_id(inside) == consumer.context.span_id
    assert dict(consumer.attributes or {}) == {
        "messaging.system": "asynctask",
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "messaging.destination.name": "mail",
        "messaging.message.id": handle.id,
        "asynctask.task": "send",
        "asynctask.attempt": 1,
        "asynctask.outcome": "succeeded",
    }
    assert (producer.attributes or {})["messaging.operation.type"] == "send"
    assert (producer.attributes or {})["messaging.message.id"] == handle.id
    # The user's headers travel next to the trace context.
    job = await _job(app, handle.id)
    assert job.headers["user"] == "u1" and job.headers["traceparent"].startswith("00-")


async def test_each_attempt_of_a_retried_job_has_its_consumer_span(app: App, traced: Traced) -> None:
    instrument(app, tracer_provider=traced.provider)

    @app.task(max_retries=2)
    async def flaky(ctx: JobCtx) -> None:
        raise ValueError(f"attempt {ctx.attempt} failed")

    async with running(app):
        with traced.tracer.start_as_current_span("request"):
            handle = await app.publish(flaky)
        await status_is(app, handle.id, JobStatus.FAILED)

    producer = traced.one("publish default", SpanKind.PRODUCER)
    attempts = sorted(traced.spans("process default", SpanKind.CONSUMER), key=lambda s: s.start_time or 0)
    assert [(s.attributes or {})["asynctask.attempt"] for s in attempts] == [1, 2, 3]
    assert [(s.attributes or {})["asynctask.outcome"] for s in attempts] == ["retried", "retried", "failed"]
    for span in attempts:
        assert parent_id(span) == producer.context.span_id
        assert span.context.trace_id == producer.context.trace_id
        assert span.status.status_code is StatusCode.ERROR
        [event] = span.events
        assert event.name == "exception"
        assert "ValueError" in str((event.attributes or {})["exception.type"])


async def test_subtasks_groups_and_chains_join_the_trace(app: App, traced: Traced) -> None:
    instrument(app, tracer_provider=traced.provider)

    @app.task
    async def child(ctx: JobCtx, n: int) -> int:
        return n

    @app.task
    async def parent(ctx: JobCtx) -> None:
        await ctx.spawn(child, 1)
        await ctx.spawn(child, 2)

    async with running(app):
        with traced.tracer.start_as_current_span("request") as request:
            handle = await app.publish(parent)
        await status_is(app, handle.id, JobStatus.SUCCEEDED)
        with traced.tracer.start_as_current_span("batch") as batch:
            group = await app.group([JobSpec("child", 3), JobSpec("child", 4)])
            chain = await app.chain([JobSpec("child", 5), JobSpec("child", 6)])
        await status_is(app, group, JobStatus.SUCCEEDED)
        await status_is(app, chain, JobStatus.SUCCEEDED)

    consumers = traced.spans(kind=SpanKind.CONSUMER)
    by_job = {(s.attributes or {})["messaging.message.id"]: s for s in consumers}
    request_trace = request.get_span_context().trace_id
    # The parent's attempt, its finish phase and both children: one trace.
    parent_spans = [s for s in consumers if (s.attributes or {})["messaging.message.id"] == handle.id]
    assert len(parent_spans) == 2
    for span in [*parent_spans, by_job[f"{handle.id}:0"], by_job[f"{handle.id}:1"]]:
        assert span.context.trace_id == request_trace
    # A child's PRODUCER span is a child of the parent's first attempt.
    first = min(parent_spans, key=lambda s: s.start_time or 0)
    spawn_producers = [
        s for s in traced.spans(kind=SpanKind.PRODUCER) if parent_id(s) == first.context.span_id
    ]
    assert len(spawn_producers) == 2
    # Group members, chain links and both containers: the trace of the batch.
    batch_trace = batch.get_span_context().trace_id
    for job_id in (group, f"{group}:0", f"{group}:1", chain, f"{chain}:0", f"{chain}:1"):
        assert by_job[job_id].context.trace_id == batch_trace, job_id


async def test_without_a_tracer_provider_nothing_is_added(app: App) -> None:
    tracing = instrument(app)  # no provider given, and none set globally in this process
    assert tracing.tracer() is None
    assert instrument(app) is tracing
    assert [o for o in app.events.observers if isinstance(o, Tracing)] == [tracing]
    # A worker starting now leaves its attempts alone: not a single hook per job.
    assert not app.events.joined(Events()).wants("attempt_started", "attempt_finished")
    assert app.events.wants("publishing")  # a publish looks for a provider each time

    @app.task
    async def plain(ctx: JobCtx) -> dict[str, str]:
        return dict(ctx.headers)

    async with running(app):
        handle = await app.publish(plain)
        assert await handle.result(timeout=10) == {}


async def _job(app: App, job_id: str):  # type: ignore[no-untyped-def]
    async with app:
        found = await app.get_job(job_id)
    assert found is not None
    return found
