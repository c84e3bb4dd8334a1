"""Payload and result encoding with msgspec, typed by the handler's annotations.

Payloads are JSON (readable in every broker, writable from the CLI). A handler whose payload is
annotated ``bytes`` receives the raw bytes untouched; pickle is never used.
"""

from __future__ import annotations

import typing
from collections.abc import Callable
from typing import Any

import msgspec

from asynctask.errors import PayloadDecodeError

__all__ = ["Codec", "type_hints"]

_encoder = msgspec.json.Encoder()


class Codec:
    """Encodes and decodes one type; ``bytes`` passes through as it is."""

    __slots__ = ("_decoder", "raw", "type")

    def __init__(self, type_: Any = Any) -> None:
        self.type = type_
        self.raw = type_ is bytes
        self._decoder: msgspec.json.Decoder[Any] = msgspec.json.Decoder(type_)

    def encode(self, value: Any) -> bytes:
        if self.raw:
            if not isinstance(value, bytes | bytearray | memoryview):
                raise TypeError(f"this task takes raw bytes, got {type(value).__name__}")
            return bytes(value)
        try:
            return _encoder.encode(value)
        except (TypeError, msgspec.EncodeError) as exc:
            raise TypeError(f"cannot encode {type(value).__name__} as JSON: {exc}") from exc

    def decode(self, data: bytes) -> Any:
        if self.raw:
            return data
        try:
            return self._decoder.decode(data)
        except msgspec.ValidationError as exc:
            # msgspec names the field: "Expected `int`, got `str` - at `$.count`".
            raise PayloadDecodeError(f"payload does not match {_type_name(self.type)}: {exc}") from exc
        except msgspec.DecodeError as exc:
            raise PayloadDecodeError(f"payload is not valid JSON: {exc}") from exc

    def __repr__(self) -> str:
        return f"<Codec {_type_name(self.type)}>"


def _type_name(type_: Any) -> str:
    return getattr(type_, "__name__", None) or repr(type_)


def type_hints(fn: Callable[..., Any]) -> dict[str, Any]:
    """``fn``'s resolved annotations; ``{}`` when they cannot be resolved (then: untyped, ``Any``)."""
    try:
        return typing.get_type_hints(fn)
    except Exception:  # e.g. a name only imported under TYPE_CHECKING or in another scope
        return {}
