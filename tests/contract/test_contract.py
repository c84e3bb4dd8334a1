"""Every rule of the broker contract, on every broker of this repository (see conftest.py)."""

from asynctask.testing.contract import *  # noqa: F403 - the packaged suite, as an outside broker would use it
