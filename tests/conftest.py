from __future__ import annotations

from collections.abc import Iterator

import pytest

# The broker contract ships in the package; this repository's brokers run through it like any
# other broker would (tests/contract/). The plugin also provides the ``clock`` (a FakeClock) and
# ``anyio_backend`` fixtures every suite here uses.
pytest_plugins = ["asynctask.testing.contract"]


@pytest.fixture(scope="session", autouse=True)
def _private_servers() -> Iterator[None]:
    """Stop the servers this test process started on demand (the mongoeco one), by PID."""
    yield
    from tests.mongo import server

    server.stop()
