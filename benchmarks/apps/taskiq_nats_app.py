"""taskiq on NATS JetStream (taskiq-nats: a durable pull consumer on a stream of the run's own)::

taskiq worker benchmarks.apps.taskiq_nats_app:broker --workers N --max-async-tasks M --max-prefetch M

``pull_consume_batch`` and ``pull_consume_timeout`` come from ``benchmarks.tuning`` (why those
values: the ``taskiq-nats`` entry there).
"""

from __future__ import annotations

from taskiq_nats import PullBasedJetStreamBroker

from benchmarks.apps import record
from benchmarks.apps.settings import NAMESPACE, NATS_URL, SETTINGS

broker = PullBasedJetStreamBroker(
    NATS_URL,
    subject=f"{NAMESPACE}.tasks",
    stream_name=NAMESPACE,
    durable=NAMESPACE,
    pull_consume_batch=SETTINGS.get("pull_consume_batch", 1),
    pull_consume_timeout=SETTINGS.get("pull_consume_timeout"),
)


@broker.task(task_name="noop")
async def noop(index: int) -> None:
    record.noop(index)


@broker.task(task_name="sleep")
async def sleep(index: int) -> None:
    await record.sleep_job(index)
