"""Payload and result encoding with msgspec, typed by the handler's annotations.

Payloads are JSON (readable in every broker, writable from the CLI). A handler whose payload is
annotated ``bytes`` receives the raw bytes untouched; pickle is never used. Types that mention a
Pydantic v2 model (``Model``, ``list[Model]``, ``Model | None``, a dataclass with a model field)
are encoded and validated by Pydantic instead (:mod:`asynctask.pydantic_codec`, extra
``pydantic``). A type neither can handle is rejected when the codec is built, that is when the
task is registered, not at the first publish.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable
from typing import Any

import msgspec
import msgspec.inspect

from asynctask.errors import ConfigurationError, PayloadDecodeError
from asynctask.pydantic_codec import PydanticCodec, mentions_model

__all__ = ["Codec", "type_hints"]

_SUPPORTED = (
    "msgspec.Struct, dataclasses, TypedDict, NamedTuple, enums, builtins (int, str, list[...], "
    "dict[str, ...], ...), datetime/UUID/Decimal, bytes (raw), or a Pydantic v2 BaseModel"
)


def _enc_hook(obj: Any) -> Any:
    """Values msgspec does not know, inside an untyped (``Any``) result: Pydantic models."""
    dump = getattr(obj, "model_dump", None)
    if callable(dump) and getattr(type(obj), "__pydantic_core_schema__", None) is not None:
        return dump(mode="json")
    raise TypeError(f"Encoding objects of type {type(obj).__name__} is unsupported")


_encoder = msgspec.json.Encoder(enc_hook=_enc_hook)


class Codec:
    """Encodes and decodes one type; ``bytes`` passes through as it is.

    ``what`` names the value in errors ("the payload of task 'resize'").
    """

    __slots__ = ("_decoder", "_pydantic", "raw", "type")

    def __init__(self, type_: Any = Any, *, what: str = "a value") -> None:
        type_ = Any if type_ is object else type_  # "anything", as msgspec reads Any
        self.type = type_
        self.raw = type_ is bytes
        self._pydantic: PydanticCodec | None = None
        self._decoder: msgspec.json.Decoder[Any] | None = None
        if mentions_model(type_):
            self._pydantic = PydanticCodec(type_, what=what, name=_type_name(type_))
            return
        try:
            self._decoder = msgspec.json.Decoder(type_)
            unsupported = _custom_type(msgspec.inspect.type_info(type_))
        except TypeError as exc:  # msgspec: "Type '...' is not supported"
            unsupported = str(exc)
        if unsupported is not None:
            raise ConfigurationError(
                f"{what} is annotated {_type_name(type_)}, which asynctask cannot encode and decode "
                f"({unsupported}); use {_SUPPORTED}"
            )

    def encode(self, value: Any) -> bytes:
        if self.raw:
            if not isinstance(value, bytes | bytearray | memoryview):
                raise TypeError(f"this task takes raw bytes, got {type(value).__name__}")
            return bytes(value)
        if self._pydantic is not None:
            return self._pydantic.encode(value)
        try:
            return _encoder.encode(value)
        except (TypeError, msgspec.EncodeError) as exc:
            raise TypeError(f"cannot encode {type(value).__name__} as JSON: {exc}") from exc

    def decode(self, data: bytes) -> Any:
        if self.raw:
            return data
        decoder = self._decoder
        if decoder is None:
            assert self._pydantic is not None
            return self._pydantic.decode(data)
        try:
            return decoder.decode(data)
        except msgspec.ValidationError as exc:
            # msgspec names the field: "Expected `int`, got `str` - at `$.count`".
            raise PayloadDecodeError(f"payload does not match {_type_name(self.type)}: {exc}") from exc
        except msgspec.DecodeError as exc:
            raise PayloadDecodeError(f"payload is not valid JSON: {exc}") from exc

    def __repr__(self) -> str:
        return f"<Codec {_type_name(self.type)}{' (pydantic)' if self._pydantic is not None else ''}>"


def _custom_type(info: msgspec.inspect.Type, seen: set[int] | None = None) -> str | None:
    """The first type msgspec would only handle with a hook (a plain class, a callable), if any.

    msgspec builds a decoder for any class, deferring the failure to the first value; asynctask
    passes no hooks, so such a type can never work: say so when the task is registered.
    """
    seen = set() if seen is None else seen
    if id(info) in seen:  # a recursive Struct
        return None
    seen.add(id(info))
    if isinstance(info, msgspec.inspect.CustomType):
        return f"{_type_name(info.cls)} is not a type msgspec can encode"
    for name in info.__struct_fields__:
        value = getattr(info, name)
        children = value if isinstance(value, tuple) else (value,)
        for child in children:
            child = child.type if isinstance(child, msgspec.inspect.Field) else child
            if isinstance(child, msgspec.inspect.Type):
                found = _custom_type(child, seen)
                if found is not None:
                    return found
    return None


def _type_name(type_: Any) -> str:
    """``dict[str, Plain]``, ``Email | None``: short names, module paths left out."""
    args = typing.get_args(type_)
    origin = typing.get_origin(type_)
    if args and origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(arg) for arg in args)
    if args and origin is not None and origin is not typing.Literal:
        return f"{_type_name(origin)}[{', '.join(_type_name(arg) for arg in args)}]"
    if type_ is type(None):
        return "None"
    return getattr(type_, "__name__", None) or repr(type_)


def type_hints(fn: Callable[..., Any]) -> dict[str, Any]:
    """``fn``'s resolved annotations; ``{}`` when they cannot be resolved (then: untyped, ``Any``)."""
    try:
        return typing.get_type_hints(fn)
    except Exception:  # e.g. a name only imported under TYPE_CHECKING or in another scope
        return {}
