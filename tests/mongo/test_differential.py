"""The differential contract on MongoDB (both paths) with a generator that leans on workflows.

The packaged suite's differential test already runs on both Mongo configurations with its
mixed generator; workflows come up rarely there (a waiting parent whose last child finishes
almost never happens), and that is where the two Mongo paths differ most.
"""

from __future__ import annotations

import random

import pytest

from asynctask.models import NewJob
from asynctask.testing import FakeClock
from asynctask.testing.contract.suite.differential import IDS, QUEUES, Run
from tests import backends

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


@pytest.mark.parametrize("name", ["mongo", "mongo-notx"])
@pytest.mark.parametrize("seed", range(8))
async def test_workflows_match_the_reference(name: str, seed: int) -> None:
    clock = FakeClock(start=1_800_000_000.0)
    async with backends.FACTORIES["memory"](clock) as memory, backends.FACTORIES[name](clock) as mongo:
        run = WorkflowRun(random.Random(seed), clock, memory, mongo)
        for step in range(80):
            try:
                await run.step()
            except AssertionError as exc:
                raise AssertionError(f"seed {seed}, step {step}: {exc}") from exc
