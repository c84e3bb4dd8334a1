"""The MongoDB broker (PyMongo's ``AsyncMongoClient``): ``mongodb://`` and ``mongodb+srv://`` URLs.

Install with ``pip install 'asynctask[mongo]'``, then use the URL as any broker URL; indexes
are created on open (or by ``asynctask migrate --broker mongodb://...``). See :class:`MongoBroker`.
"""

from __future__ import annotations

from asynctask.brokers.mongo.broker import MongoBroker

__all__ = ["MongoBroker"]
