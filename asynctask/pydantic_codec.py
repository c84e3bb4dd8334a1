"""Pydantic v2 models as payload and result types (``pip install 'asynctask[pydantic]'``).

A type that mentions a ``pydantic.BaseModel`` (the model itself, ``list[Model]``, ``Model | None``,
a dataclass or TypedDict with a model field) is handled by a ``pydantic.TypeAdapter``: a publish
validates the payload (a model instance, or a dict that validates into one) and stores the model's
JSON; the worker validates that JSON into the model again. Validation errors become
:class:`~asynctask.errors.PayloadDecodeError`, naming each field, like msgspec's.

Pydantic is imported only when such a type is seen: a model's class cannot exist without it.
"""

from __future__ import annotations

import dataclasses
import sys
import typing
from typing import Any

from asynctask.errors import ConfigurationError, PayloadDecodeError

__all__ = ["PydanticCodec", "mentions_model"]


def mentions_model(type_: Any, _seen: frozenset[int] = frozenset()) -> bool:
    """Whether ``type_`` is or contains a Pydantic v2 model (without importing Pydantic)."""
    pydantic = sys.modules.get("pydantic")
    if pydantic is None or id(type_) in _seen:
        return False
    seen = _seen | {id(type_)}
    if isinstance(type_, type) and issubclass(type_, pydantic.BaseModel):
        return True
    if any(mentions_model(arg, seen) for arg in typing.get_args(type_)):
        return True
    if isinstance(type_, type) and (dataclasses.is_dataclass(type_) or typing.is_typeddict(type_)):
        try:
            fields = typing.get_type_hints(type_)
        except Exception:
            return False
        return any(mentions_model(field, seen) for field in fields.values())
    return False


class PydanticCodec:
    """Encodes (after validating) and decodes (validating) one type with a ``TypeAdapter``."""

    __slots__ = ("_adapter", "_errors", "name")

    def __init__(self, type_: Any, *, what: str, name: str) -> None:
        import pydantic

        self.name = name
        self._errors = pydantic.ValidationError
        try:
            self._adapter: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(type_)
        except (pydantic.PydanticSchemaGenerationError, pydantic.PydanticUserError, TypeError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ConfigurationError(
                f"{what} is annotated {self.name}, which Pydantic cannot validate ({first})"
            ) from None

    def encode(self, value: Any) -> bytes:
        try:
            # A dict (from the CLI, or publish by name) validates into the model first; a model
            # instance passes through (Pydantic does not revalidate instances by default).
            valid = self._adapter.validate_python(value)
        except self._errors as exc:
            raise PayloadDecodeError(f"payload does not match {self.name}: {_describe(exc)}") from None
        data: bytes = self._adapter.dump_json(valid)
        return data

    def decode(self, data: bytes) -> Any:
        try:
            return self._adapter.validate_json(data)
        except self._errors as exc:
            raise PayloadDecodeError(f"payload does not match {self.name}: {_describe(exc)}") from None


def _describe(exc: Any) -> str:
    """Pydantic's errors on one line: ``to: Field required; age: Input should be a valid integer``."""
    parts = []
    for error in exc.errors(include_url=False):
        where = ".".join(str(part) for part in error.get("loc", ())) or "$"
        parts.append(f"{where}: {error.get('msg', 'invalid')}")
    return "; ".join(parts) or str(exc)
