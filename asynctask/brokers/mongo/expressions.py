"""Aggregation expressions shared by the update pipelines.

Update pipelines (MongoDB 4.2+) let one single-document update decide on the document's own
values (a success with children pending waits; a parent whose last child finished is released),
which is what keeps every state change atomic without server-side scripts.
"""

from __future__ import annotations

from typing import Any

__all__ = ["REMOVE", "absent", "add", "cond", "has_parent", "keep", "or_default"]

#: In a ``$set`` stage: leave the field out of the document.
REMOVE = "$$REMOVE"


def absent(field: str) -> dict[str, Any]:
    """True when ``field`` is missing from the document."""
    return {"$eq": [{"$type": f"${field}"}, "missing"]}


def keep(field: str) -> Any:
    """The field's current value, or absent if it is absent (never turned into ``null``)."""
    return {"$cond": [absent(field), REMOVE, f"${field}"]}


def cond(test: Any, then: Any, otherwise: Any) -> dict[str, Any]:
    return {"$cond": [test, then, otherwise]}


def or_default(field: str, default: Any) -> dict[str, Any]:
    return {"$ifNull": [f"${field}", default]}


def add(*terms: Any) -> dict[str, Any]:
    return {"$add": list(terms)}


def has_parent() -> dict[str, Any]:
    """True when the job has a ``parent_id``."""
    return {"$eq": [{"$type": "$parent_id"}, "string"]}
