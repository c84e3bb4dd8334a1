"""The differential contract: random operation sequences on the broker under test and on the
in-memory reference must agree.

Every answer (claims, outcomes, lease states, counts) and every job's stored state is compared
after each step, so any drift of a broker's queries or scripts from the reference semantics shows
up with the seed and step that caused it. (On the memory broker itself it checks nothing new, and
costs little.)

Fencing tokens are compared by what they stand for, not by value: a broker may number claims its
own way (PostgreSQL takes them from the server's clock), so each token the broker under test
hands out is paired with the reference's token of the same claim, and translated both ways.
"""

from __future__ import annotations

import random
from typing import cast

import msgspec
import pytest

from asynctask.brokers.base import Broker
from asynctask.brokers.memory import MemoryBroker
from asynctask.models import Job, JobStatus, Lease, NewJob, Outcome, OutcomeKind
from asynctask.testing import FakeClock

IDS = [f"j{i}" for i in range(12)]
QUEUES = ["q", "q2"]
KINDS = list(OutcomeKind)
OPS = [
    *("enqueue", "claim", "complete", "extend", "save", "rescue", "promote", "prune"),
    *("cancel", "retry", "delete", "pause", "resume", "advance"),
]


def state(job: Job | None, tokens: dict[tuple[str, int], int] | None = None) -> dict[str, object] | None:
    """The job's fields; ``tokens`` translates its token (by job id and token)."""
    if job is None:
        return None
    fields = msgspec.structs.asdict(job)
    if tokens is not None:
        fields["token"] = tokens.get((job.id, job.token), job.token)
    return fields


class Run:
    def __init__(self, rng: random.Random, clock: FakeClock, memory: Broker, other: Broker) -> None:
        self.rng, self.clock, self.memory, self.other = rng, clock, memory, other
        self.held: dict[str, Job] = {}  # claimed jobs (as the reference returned them)
        # The tested broker's token of each claim <-> the reference's, by job id.
        self.to_tested: dict[tuple[str, int], int] = {}
        self.to_reference: dict[tuple[str, int], int] = {}

    def token_for_other(self, job_id: str, token: int) -> int:
        """The tested broker's token for the reference's ``token`` (one past the last token it
        gave for the job when the reference's is a stale one never handed out)."""
        if (job_id, token) in self.to_tested:
            return self.to_tested[(job_id, token)]
        if (job_id, token - 1) in self.to_tested:
            return self.to_tested[(job_id, token - 1)] + 1
        return token

    def for_other(self, name: str, args: tuple[object, ...]) -> tuple[object, ...]:
        """``args`` of the call ``name`` with the tested broker's tokens."""
        mine = self.token_for_other
        if name == "complete":
            outcomes = cast("list[Outcome]", args[0])
            return ([msgspec.structs.replace(o, token=mine(o.job_id, o.token)) for o in outcomes],)
        if name == "extend_leases":
            leases = cast("list[Lease]", args[0])
            return ([Lease(h.job_id, mine(h.job_id, h.token)) for h in leases],)
        if name == "save":
            job_id, token = cast("tuple[str, int]", args)
            return job_id, mine(job_id, token)
        return args

    async def both(self, name: str, *args: object, **kw: object) -> object:
        expected = await getattr(self.memory, name)(*args, **kw)
        actual = await getattr(self.other, name)(*self.for_other(name, args), **kw)
        if name in ("cancel", "retry", "pause", "resume"):
            expected, actual = state(expected), state(actual, self.to_reference)
        assert actual == expected, name
        return expected

    def new(self) -> NewJob:
        rng, now = self.rng, self.clock()
        job_id = rng.choice(IDS)
        return NewJob(
            id=job_id,
            task=rng.choice(["a", "b"]),
            queue=rng.choice(QUEUES),
            payload=rng.randbytes(rng.randint(0, 8)),
            priority=rng.randint(-2, 2),
            max_retries=rng.randint(0, 2),
            run_at=now + rng.choice([0.0, 0.0, -1.0, 5.0]),
            parent_id=rng.choice([None, None, rng.choice([i for i in IDS if i != job_id])]),
            pending=rng.choice([0, 0, 0, 1]),
            # Derived from the id, not drawn, so the seeds keep their operation sequences.
            headers={"h": job_id} if job_id[-1] in "13579" else {},
        )

    async def step(self) -> None:
        rng = self.rng
        op = rng.choice(OPS)
        job_id = rng.choice(IDS)
        if op == "enqueue":
            await self.both("enqueue", [self.new() for _ in range(rng.randint(1, 3))])
        elif op == "claim":
            for job in await self.claim(rng.choice(QUEUES), rng.randint(1, 4)):
                self.held[job.id] = job
        elif op == "complete" and self.held:
            job = self.held.pop(rng.choice(sorted(self.held)))
            kind = rng.choice(KINDS)
            spawn = tuple(self.new() for _ in range(rng.choice([0, 0, 1, 2])))
            outcome = Outcome(
                job_id=job.id,
                token=job.token if rng.random() < 0.9 else job.token + 1,
                kind=kind,
                result=rng.choice([None, b"r"]),
                error=rng.choice([None, "e"]),
                run_at=self.clock() + rng.choice([0.0, 3.0]),
                expires_at=rng.choice([None, self.clock() + 4]),
                spawn=spawn,
                meta=rng.choice([None, b"m"]),
            )
            await self.both("complete", [outcome])
        elif op == "extend" and self.held:
            leases = [Lease(j.id, j.token) for j in self.held.values()]
            await self.both("extend_leases", leases, lease=10.0)
        elif op == "save" and self.held:
            job = rng.choice(list(self.held.values()))
            await self.both("save", job.id, job.token, state=rng.randbytes(3), result=None)
        elif op in ("rescue", "promote", "prune"):
            name = {"rescue": "rescue_expired", "promote": "promote_due", "prune": "prune"}[op]
            await self.both(name, 100)
        elif op == "cancel":
            await self.both("cancel", job_id, expires_at=rng.choice([None, self.clock() + 4]))
        elif op in ("retry", "pause", "resume"):
            await self.both(op, job_id)
        elif op == "delete":
            await self.both("delete", job_id)
        elif op == "advance":
            self.clock.advance(rng.choice([1.0, 6.0, 11.0]))
        await self.compare()

    async def claim(self, queue: str, limit: int) -> list[Job]:
        expected = await self.memory.claim(queue, limit, lease=10.0, worker="w")
        actual = await self.other.claim(queue, limit, lease=10.0, worker="w")
        if [j.id for j in actual] == [j.id for j in expected]:
            for tested, ours in zip(actual, expected, strict=True):
                self.to_tested[(ours.id, ours.token)] = tested.token
                self.to_reference[(ours.id, tested.token)] = ours.token
        assert [state(j, self.to_reference) for j in actual] == [state(j) for j in expected], "claim"
        return expected

    async def compare(self) -> None:
        for job_id in IDS:
            actual = state(await self.other.get(job_id), self.to_reference)
            assert actual == state(await self.memory.get(job_id)), job_id
        # Listing order among jobs created at the same instant is not part of the contract.
        status = self.rng.choice([None, *JobStatus])
        listed = [sorted(j.id for j in await b.list_jobs(status=status)) for b in (self.memory, self.other)]
        assert listed[1] == listed[0], f"list_jobs(status={status})"


@pytest.mark.parametrize("seed", range(12))
async def test_the_broker_matches_the_reference(seed: int, broker: Broker, clock: FakeClock) -> None:
    reference = MemoryBroker(clock=clock)
    await reference.open()
    try:
        run = Run(random.Random(seed), clock, reference, broker)
        for step in range(80):
            try:
                await run.step()
            except AssertionError as exc:
                raise AssertionError(f"seed {seed}, step {step}: {exc}") from exc
    finally:
        await reference.close()
