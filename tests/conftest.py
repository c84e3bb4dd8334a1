from __future__ import annotations

# The broker contract ships in the package; this repository's brokers run through it like any
# other broker would (tests/contract/). The plugin also provides the ``clock`` (a FakeClock) and
# ``anyio_backend`` fixtures every suite here uses.
pytest_plugins = ["asynctask.testing.contract"]
