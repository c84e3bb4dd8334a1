"""Random operation sequences on the NATS broker and the in-memory reference must agree.

The same runner as the Redis broker's (``tests/redis/test_differential.py``): every answer and
every job's stored state is compared after each step.
"""

from __future__ import annotations

import random

import pytest

from asynctask.testing import FakeClock
from tests import backends
from tests.redis.test_differential import Run

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("seed", range(12))
async def test_nats_matches_the_reference(seed: int) -> None:
    clock = FakeClock(start=1_800_000_000.0)
    async with backends.FACTORIES["memory"](clock) as memory, backends.FACTORIES["nats"](clock) as nats:
        run = Run(random.Random(seed), clock, memory, nats)
        for step in range(80):
            try:
                await run.step()
            except AssertionError as exc:
                raise AssertionError(f"seed {seed}, step {step}: {exc}") from exc
