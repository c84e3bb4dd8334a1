"""The Redis broker (``redis://`` and ``rediss://`` URLs); needs ``pip install 'asynctask[redis]'``.

>>> from asynctask.brokers.redis import RedisBroker
>>> RedisBroker.from_url("redis://:secret@localhost:6379/0?prefix=app").display_url
'redis://:***@localhost:6379/0?prefix=app'
"""

from __future__ import annotations

from asynctask.brokers.redis.broker import RedisBroker

__all__ = ["RedisBroker"]
