"""Random operation sequences on the MongoDB broker (both paths) and the in-memory reference agree.

The generator and comparison of the Redis differential test (``tests/redis``): every answer and
every job's stored state is compared after each step. A second generator leans on workflows
(more parents, more waiting jobs), where the two Mongo paths differ most.
"""

from __future__ import annotations

import random

import pytest

from asynctask.models import NewJob
from asynctask.testing import FakeClock
from tests import backends
from tests.redis.test_differential import IDS, QUEUES, Run

pytestmark = pytest.mark.anyio


class WorkflowRun(Run):
    """Half the jobs have a parent among a few ids, and a third of them wait for children."""

    def new(self) -> NewJob:
        rng, now = self.rng, self.clock()
        job_id = rng.choice(IDS)
        parents = [i for i in IDS[:4] if i != job_id]
        return NewJob(
            id=job_id,
            task=rng.choice(["a", "b"]),
            queue=rng.choice(QUEUES),
            payload=rng.randbytes(rng.randint(0, 4)),
            priority=rng.randint(-1, 1),
            max_retries=rng.randint(0, 1),
            run_at=now + rng.choice([0.0, 0.0, 5.0]),
            parent_id=rng.choice([None, rng.choice(parents)]),
            pending=rng.choice([0, 0, 1, 2]),
        )


@pytest.mark.parametrize("generator", [Run, WorkflowRun], ids=["mixed", "workflows"])
@pytest.mark.parametrize("name", ["mongo", "mongo-notx"])
@pytest.mark.parametrize("seed", range(8))
async def test_mongo_matches_the_reference(generator: type[Run], name: str, seed: int) -> None:
    clock = FakeClock(start=1_800_000_000.0)
    async with backends.FACTORIES["memory"](clock) as memory, backends.FACTORIES[name](clock) as mongo:
        run = generator(random.Random(seed), clock, memory, mongo)
        for step in range(80):
            try:
                await run.step()
            except AssertionError as exc:
                raise AssertionError(f"seed {seed}, step {step}: {exc}") from exc
