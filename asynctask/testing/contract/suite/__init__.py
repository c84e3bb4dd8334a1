"""The contract's test modules, collected through :mod:`asynctask.testing.contract`."""
