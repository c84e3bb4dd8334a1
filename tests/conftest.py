from __future__ import annotations

from collections.abc import Iterator

import pytest

# The broker contract ships in the package; this repository's brokers run through it like any
# other broker would (tests/contract/). The plugin also provides the ``clock`` (a FakeClock) and
# ``anyio_backend`` fixtures every suite here uses.
pytest_plugins = ["asynctask.testing.contract"]


@pytest.fixture(scope="session", autouse=True)
def _private_servers() -> Iterator[None]:
    """Stop the servers this test process started on demand (mongoeco, nats-server), by PID."""
    yield
    from tests import backend_nats
    from tests.mongo import server

    server.stop()
    backend_nats.stop()


#: PyMongo's async client can leave a monitor's socket to the garbage collector when it is closed
#: while that monitor is connecting (PyMongo's own suite has the same warnings: PYTHON-3923,
#: mongo-python-driver#2805). With warnings as errors, whichever MongoDB test is running when the
#: collector finds it fails. Only MongoDB tests ignore it, and only for raw sockets: asyncpg,
#: redis-py and nats-py use asyncio transports, whose leaks warn as "unclosed transport".
_PYMONGO_SOCKETS = pytest.mark.filterwarnings("ignore:unclosed <socket.socket:ResourceWarning")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "mongo" in item.nodeid:
            item.add_marker(_PYMONGO_SOCKETS)
