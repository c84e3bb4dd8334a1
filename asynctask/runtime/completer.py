"""The completer: sends outcomes back in batches, one broker round trip for many jobs.

Failures are retried with backoff, never more than ``max_delay`` (at most 5 s) apart: the worker
passes its heartbeat interval, so outcomes held through a broker outage (their leases extended by
the same heartbeat) are reported about as soon as the broker answers again, before another
worker's maintenance can find those leases lapsed and run the jobs a second time.

A batch the broker keeps refusing (an error other than "unreachable", while the broker answers
other calls) is split; an outcome refused on its own is replaced by a plain ``failed`` outcome
naming the problem (no result, no spawned jobs), so one poison outcome never blocks its
neighbours. When the worker stops, reporting gives up at the drain deadline: those jobs go back to
the queue when their leases expire.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import anyio
import msgspec

from asynctask.brokers.base import Broker
from asynctask.models import Outcome, OutcomeKind
from asynctask.runtime.control import Control, Slots, WorkerStats
from asynctask.runtime.handoff import Handoff

__all__ = ["MAX_BATCH", "Completer"]

log = logging.getLogger("asynctask.worker")

#: Most outcomes in one completion (and most jobs in one claim).
MAX_BATCH = 256
#: Refusals of one batch before it is split (or, for one outcome, before the broker is probed).
_REFUSALS = 3
_MAX_DELAY = 5.0


class Completer:
    def __init__(
        self,
        broker: Broker,
        *,
        slots: Slots,
        control: Control,
        stats: WorkerStats,
        timeout: float,
        max_delay: float = _MAX_DELAY,
    ) -> None:
        self.broker = broker
        self.max_delay = min(max_delay, _MAX_DELAY)
        self.slots = slots
        self.control = control
        self.stats = stats
        self.timeout = timeout

    async def run(self, outcomes: Handoff[Outcome]) -> None:
        """Report outcomes until every executor is done and nothing is left."""
        while True:
            try:
                first = await outcomes.get()
            except anyio.EndOfStream:
                return
            # One turn of the loop lets the executors finishing at the same moment add their
            # outcomes: one round trip then reports them all.
            await asyncio.sleep(0)
            batch = [first]
            while len(batch) < MAX_BATCH:
                try:
                    batch.append(outcomes.get_nowait())
                except (anyio.WouldBlock, anyio.EndOfStream):
                    break
            await self.flush(batch)

    async def flush(self, batch: Sequence[Outcome]) -> None:
        try:
            applied = await self._complete(batch)
        except _GaveUp:
            for outcome in batch:
                self._count(outcome, False)
            return
        if applied is None:
            if len(batch) > 1:
                for outcome in batch:
                    await self.flush([outcome])
                return
            log.error(
                "the broker refuses the outcome of job %s; failing the job instead",
                batch[0].job_id,
                extra={"action": "outcome_refused", "job_id": batch[0].job_id},
            )
            applied = await self._complete([_plain_failure(batch[0])]) or [False]
        for outcome, ok in zip(batch, applied, strict=True):
            if not ok:
                await self._rejected(outcome)
            self._count(outcome, ok)
        self.slots.settle()

    async def _rejected(self, outcome: Outcome) -> None:
        """Say why the broker did not apply an outcome: the job is gone, or no longer ours."""
        gone = not await self._broker_answers(outcome.job_id, exists=True)
        log.warning(
            "outcome of job %s was discarded: %s",
            outcome.job_id,
            "the job was deleted while it ran" if gone else "its lease had passed to another worker",
            extra={"action": "outcome_rejected", "job_id": outcome.job_id},
        )

    async def _complete(self, batch: Sequence[Outcome]) -> list[bool] | None:
        """``broker.complete``, retried; ``None`` when the broker refuses this very batch."""
        delay = min(0.05, self.max_delay)
        refusals = 0
        while True:
            try:
                with anyio.fail_after(self.timeout):
                    return await self.broker.complete(batch)
            except Exception as exc:
                reason = str(exc) or type(exc).__name__
                if self.control.immediate or anyio.current_time() >= self.control.give_up_at:
                    log.error(
                        "could not report %d outcome(s) before stopping (%s): those jobs go back to the "
                        "queue when their leases expire",
                        len(batch),
                        reason,
                        extra={"action": "complete_error"},
                    )
                    raise _GaveUp from exc
                if not isinstance(exc, ConnectionError | TimeoutError | OSError):
                    refusals += 1
                    if refusals >= _REFUSALS and await self._broker_answers(batch[0].job_id):
                        return None
                log.warning(
                    "reporting %d outcome(s) failed (%s); retrying in %.2fs",
                    len(batch),
                    reason,
                    delay,
                    extra={"action": "complete_error"},
                )
                await anyio.sleep(delay)
                delay = min(delay * 2, self.max_delay)

    async def _broker_answers(self, job_id: str, *, exists: bool = False) -> bool:
        """Whether the broker serves other calls (then a refusal is about the batch itself);
        with ``exists``, whether it also still has the job."""
        try:
            with anyio.fail_after(self.timeout):
                job = await self.broker.get(job_id)
        except Exception:
            return exists  # unknown: assume the usual case
        return job is not None or not exists

    def _count(self, outcome: Outcome, ok: bool) -> None:
        self.slots.held.pop(outcome.job_id, None)
        stats = self.stats
        if not ok:
            stats.lost += 1
            return
        kind = outcome.kind
        if kind is OutcomeKind.SUCCEEDED:
            stats.succeeded += 1
        elif kind is OutcomeKind.FAILED:
            stats.failed += 1
        elif kind is OutcomeKind.RETRY:
            stats.retried += 1
        elif kind is OutcomeKind.CANCELLED:
            stats.cancelled += 1
        else:
            stats.released += 1


class _GaveUp(Exception):
    """The worker stops and its drain deadline passed: outcomes are no longer reported."""


def _plain_failure(outcome: Outcome) -> Outcome:
    return msgspec.structs.replace(
        outcome,
        kind=OutcomeKind.FAILED,
        result=None,
        spawn=(),
        meta=None,
        run_at=None,
        error=f"the broker refused this job's {outcome.kind.value} outcome; the job was failed instead",
    )
