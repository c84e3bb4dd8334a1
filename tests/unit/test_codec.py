from __future__ import annotations

import dataclasses
from typing import Any, TypedDict

import msgspec
import pytest

from asynctask.codec import Codec
from asynctask.errors import PayloadDecodeError
from asynctask.log import redact_url


class S(msgspec.Struct):
    a: int


@dataclasses.dataclass
class D:
    a: int


class TD(TypedDict):
    a: int


@pytest.mark.parametrize(
    ("type_", "value"), [(S, S(1)), (D, D(1)), (TD, {"a": 1}), (list[int], [1, 2]), (Any, {"x": None})]
)
def test_round_trip(type_: Any, value: Any) -> None:
    codec = Codec(type_)
    assert codec.decode(codec.encode(value)) == value


def test_bytes_pass_through_untouched() -> None:
    codec = Codec(bytes)
    assert codec.encode(b"\x00\xff") == b"\x00\xff"
    assert codec.decode(b"\x00\xff") == b"\x00\xff"
    with pytest.raises(TypeError, match="raw bytes"):
        codec.encode("text")


def test_decode_errors_name_the_field() -> None:
    with pytest.raises(
        PayloadDecodeError, match=r"payload does not match S: Expected `int`, got `str` - at `\$.a`"
    ):
        Codec(S).decode(b'{"a": "x"}')
    with pytest.raises(PayloadDecodeError, match="not valid JSON"):
        Codec(S).decode(b"{")


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://app:s3cret@db:5432/jobs", "postgresql://app:***@db:5432/jobs"),
        ("redis://:pw@cache:6379/0", "redis://:***@cache:6379/0"),
        ("redis://cache:6379/0", "redis://cache:6379/0"),
        ("postgres://user@h/db", "postgres://user@h/db"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown
