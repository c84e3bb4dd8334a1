"""Payload and result types: Pydantic models, and annotations rejected when the task is registered."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import msgspec
import pydantic
import pytest

from asynctask import App, ConfigurationError, JobCtx, PayloadDecodeError
from asynctask.codec import Codec


class Plain:
    """A class msgspec cannot encode without hooks."""


class Holder(msgspec.Struct):
    items: list[Plain]


class Email(pydantic.BaseModel):
    to: str
    age: int = 0


@dataclasses.dataclass
class Envelope:
    email: Email
    note: str = ""


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (
            lambda app: app.task(_takes(Plain)),
            r"the payload of task 'handler' is annotated Plain, which asynctask cannot encode and decode "
            r"\(Plain is not a type msgspec can encode\); use msgspec.Struct",
        ),
        (
            lambda app: app.task(_takes(Holder)),
            r"the payload of task 'handler' is annotated Holder, .*\(Plain is not a type msgspec can",
        ),
        (
            lambda app: app.task(_returns(Callable[[int], int])),
            r"the result of task 'handler' is annotated Callable",
        ),
        (
            lambda app: app.task(_takes(dict[str, Plain])),
            r"annotated dict\[str, Plain\], which",
        ),
    ],
)
def test_an_unusable_annotation_fails_at_registration_naming_the_type(
    make: Callable[[App], Any], message: str
) -> None:
    app = App("memory://")
    with pytest.raises(ConfigurationError, match=message):
        make(app)
    assert "handler" not in app.tasks


def test_an_unusable_on_finish_annotation_fails_at_registration() -> None:
    app = App("memory://")

    @app.task
    async def parent(ctx: JobCtx) -> None:
        return None

    async def done(ctx: JobCtx, children: list[Any]) -> Plain:
        return Plain()

    with pytest.raises(ConfigurationError, match=r"the on_finish result of task 'parent' is annotated Plain"):
        parent.on_finish(done)


def test_pydantic_models_nested_in_containers_and_dataclasses() -> None:
    codec = Codec(list[Email])
    assert codec.decode(codec.encode([{"to": "a@b"}, Email(to="c@d", age=3)])) == [
        Email(to="a@b"),
        Email(to="c@d", age=3),
    ]
    envelope = Codec(Envelope)
    assert repr(envelope) == "<Codec Envelope (pydantic)>"
    assert envelope.decode(envelope.encode(Envelope(email=Email(to="x")))) == Envelope(email=Email(to="x"))
    optional = Codec(Email | None)
    assert optional.decode(b"null") is None


def test_pydantic_validation_errors_name_every_field() -> None:
    codec = Codec(Email)
    with pytest.raises(PayloadDecodeError, match=r"^payload does not match Email: to: Field required; age: "):
        codec.encode({"age": "old"})
    with pytest.raises(PayloadDecodeError, match=r"payload does not match Email: \$: Invalid JSON"):
        codec.decode(b"{not json")


@dataclasses.dataclass
class Mixed:
    email: Email
    thing: Plain


def test_a_type_that_pydantic_cannot_validate_either_fails_at_registration() -> None:
    app = App("memory://")
    with pytest.raises(
        ConfigurationError,
        match=r"the payload of task 'handler' is annotated Mixed, which Pydantic cannot validate \(Unable",
    ):
        app.task(_takes(Mixed))


def test_an_untyped_result_may_be_a_pydantic_model() -> None:
    assert Codec().encode({"email": Email(to="a@b")}) == b'{"email":{"to":"a@b","age":0}}'
    with pytest.raises(TypeError, match="Encoding objects of type Plain is unsupported"):
        Codec().encode(Plain())


def _takes(type_: Any) -> Callable[..., Any]:
    async def handler(ctx: JobCtx, payload: Any) -> None:
        return None

    handler.__annotations__ = {"ctx": JobCtx, "payload": type_, "return": None}
    return handler


def _returns(type_: Any) -> Callable[..., Any]:
    async def handler(ctx: JobCtx) -> Any:
        return None

    handler.__annotations__ = {"ctx": JobCtx, "return": type_}
    return handler
