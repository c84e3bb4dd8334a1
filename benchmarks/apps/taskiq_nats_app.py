"""taskiq on NATS JetStream (taskiq-nats, a pull consumer on a stream of the run's own)::

taskiq worker benchmarks.apps.taskiq_nats_app:broker --workers 1
"""

from __future__ import annotations

from taskiq_nats import PullBasedJetStreamBroker

from benchmarks.apps import record
from benchmarks.apps.settings import CONCURRENCY, NAMESPACE, NATS_URL

# One fetch per job (taskiq-nats's default batch of 1) would measure round trips, not the
# library: fetch up to one worker's concurrency at a time, as a user tuning it would.
broker = PullBasedJetStreamBroker(
    NATS_URL,
    subject=f"{NAMESPACE}.tasks",
    stream_name=NAMESPACE,
    durable=NAMESPACE,
    pull_consume_batch=CONCURRENCY,
    pull_consume_timeout=1.0,
)


@broker.task(task_name="noop")
async def noop(index: int) -> None:
    record.noop(index)


@broker.task(task_name="sleep")
async def sleep(index: int) -> None:
    await record.sleep_job(index)
