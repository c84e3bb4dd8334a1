"""asynctask: an asyncio-native distributed job queue.

>>> from asynctask import App, JobCtx
>>> app = App("memory://")
>>> @app.task
... async def add(ctx: JobCtx, numbers: list[int]) -> int:
...     return sum(numbers)
"""

from asynctask.app import App, Middleware
from asynctask.brokers import Broker, Capabilities, MemoryBroker, broker_from_url
from asynctask.ctx import JobCtx, current_ctx
from asynctask.errors import (
    AsyncTaskError,
    BrokerError,
    BrokerUnavailable,
    Cancel,
    ConfigurationError,
    Fail,
    InvalidName,
    JobFailed,
    JobNotFound,
    JobTimeout,
    LeaseLost,
    MissingExtra,
    PayloadDecodeError,
    PayloadTooLarge,
    Retry,
    SchemaOutdated,
    UnknownTask,
)
from asynctask.models import Job, JobStatus, QueueStats
from asynctask.retry import Backoff, Fixed, RetryPolicy
from asynctask.schedule import Cron, Daily, Interval, InvalidSchedule, Monthly
from asynctask.task import JobHandle, JobSpec, Task
from asynctask.worker import Worker, WorkerStats
from asynctask.workflows import ChainInfo, Done, GroupInfo, LinkInfo, Step, reentrant

__version__ = "0.1.0"

__all__ = [
    "App",
    "AsyncTaskError",
    "Backoff",
    "Broker",
    "BrokerError",
    "BrokerUnavailable",
    "Cancel",
    "Capabilities",
    "ChainInfo",
    "ConfigurationError",
    "Cron",
    "Daily",
    "Done",
    "Fail",
    "Fixed",
    "GroupInfo",
    "Interval",
    "InvalidName",
    "InvalidSchedule",
    "Job",
    "JobCtx",
    "JobFailed",
    "JobHandle",
    "JobNotFound",
    "JobSpec",
    "JobStatus",
    "JobTimeout",
    "LeaseLost",
    "LinkInfo",
    "MemoryBroker",
    "Middleware",
    "MissingExtra",
    "Monthly",
    "PayloadDecodeError",
    "PayloadTooLarge",
    "QueueStats",
    "Retry",
    "RetryPolicy",
    "SchemaOutdated",
    "Step",
    "Task",
    "UnknownTask",
    "Worker",
    "WorkerStats",
    "broker_from_url",
    "current_ctx",
    "reentrant",
]
