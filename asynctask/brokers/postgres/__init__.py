"""The PostgreSQL broker (asyncpg): ``postgresql://`` and ``postgres://`` URLs.

Install with ``pip install 'asynctask[postgres]'``, create the schema with
``asynctask migrate --broker postgresql://...`` (or pass ``?auto_migrate=true``), then use the
URL as any broker URL. See :class:`PostgresBroker`.
"""

from __future__ import annotations

from asynctask.brokers.postgres.broker import PostgresBroker

__all__ = ["PostgresBroker"]
