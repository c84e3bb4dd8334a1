"""asynctask: an asyncio-native distributed job queue.

>>> from asynctask import App, JobCtx
>>> app = App("memory://")
>>> @app.task
... async def add(ctx: JobCtx, numbers: list[int]) -> int:
...     return sum(numbers)
"""

from asynctask.app import App
from asynctask.brokers import Broker, Capabilities, MemoryBroker, broker_from_url
from asynctask.ctx import JobCtx, current_ctx
from asynctask.errors import (
    AsyncTaskError,
    BrokerError,
    BrokerUnavailable,
    Cancel,
    ConfigurationError,
    CorruptJob,
    Fail,
    InvalidName,
    JobFailed,
    JobNotFound,
    JobTimeout,
    LeaseLost,
    LifespanFailed,
    MissingExtra,
    Paused,
    PayloadDecodeError,
    PayloadTooLarge,
    Retry,
    SchemaOutdated,
    UnknownTask,
)
from asynctask.flow import QueueSettings, RateLimit
from asynctask.handle import JobHandle
from asynctask.models import Job, JobStatus, QueueStats, WorkerInfo
from asynctask.options import JobSpec, PublishOptions
from asynctask.registry import Middleware, Registry
from asynctask.retry import Backoff, Fixed, RetryPolicy
from asynctask.runtime.control import WorkerStats
from asynctask.runtime.options import WorkerOptions
from asynctask.runtime.worker import Worker
from asynctask.schedule import Cron, Daily, Interval, InvalidSchedule, Monthly
from asynctask.task import Task, TaskOptions
from asynctask.workflows.chains import ChainInfo, LinkInfo
from asynctask.workflows.groups import GroupInfo
from asynctask.workflows.incremental import Done
from asynctask.workflows.pipelines import Step, reentrant

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
    "CorruptJob",
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
    "LifespanFailed",
    "LinkInfo",
    "MemoryBroker",
    "Middleware",
    "MissingExtra",
    "Monthly",
    "Paused",
    "PayloadDecodeError",
    "PayloadTooLarge",
    "PublishOptions",
    "QueueSettings",
    "QueueStats",
    "RateLimit",
    "Registry",
    "Retry",
    "RetryPolicy",
    "SchemaOutdated",
    "Step",
    "Task",
    "TaskOptions",
    "UnknownTask",
    "Worker",
    "WorkerInfo",
    "WorkerOptions",
    "WorkerStats",
    "broker_from_url",
    "current_ctx",
    "reentrant",
]
