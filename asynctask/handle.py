"""The handle a publish returns, and the narrow client it follows the job through."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Generic, Protocol, TypeVar

from asynctask.models import Job
from asynctask.options import JobSpec

__all__ = ["Client", "JobHandle", "Publisher"]

R = TypeVar("R")


class Client(Protocol):
    """What a :class:`JobHandle` needs to follow its job (an :class:`~asynctask.App` is one)."""

    async def result(self, job_id: str, *, timeout: float | None = None) -> Any: ...

    async def get_job(self, job_id: str) -> Job | None: ...

    async def cancel(self, job_id: str) -> Job: ...


class Publisher(Protocol):
    """What publishes jobs (an :class:`~asynctask.App`); tasks publish through their registry's."""

    async def publish_many(
        self, specs: Iterable[JobSpec], *, connection: Any = None
    ) -> list[JobHandle[Any]]: ...


class JobHandle(Generic[R]):
    """What :meth:`Task.publish` returns: the job's id and ways to follow it."""

    __slots__ = ("_client", "created", "id", "task")

    def __init__(self, client: Client, job_id: str, task: str, *, created: bool) -> None:
        self._client = client
        self.id = job_id
        self.task = task
        #: ``False`` when a job with this id already existed (idempotent publish).
        self.created = created

    async def result(self, timeout: float | None = None) -> R:
        """Wait for the job to finish and return its result; see :meth:`App.result`."""
        result: R = await self._client.result(self.id, timeout=timeout)
        return result

    async def info(self) -> Job | None:
        return await self._client.get_job(self.id)

    async def cancel(self) -> Job:
        return await self._client.cancel(self.id)

    def __repr__(self) -> str:
        return f"<JobHandle {self.task} id={self.id}{'' if self.created else ' (existing)'}>"
