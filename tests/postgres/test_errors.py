"""Bad input at the boundary: unreachable servers, bad credentials, bad URLs. Never a password."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

import pytest

from asynctask.brokers import broker_from_url
from asynctask.brokers.postgres import PostgresBroker
from asynctask.brokers.postgres.config import parse_url, redact_url
from asynctask.errors import BrokerError, BrokerUnavailable, ConfigurationError
from asynctask.testing import FakeClock
from tests.backend_postgres import URL

pytestmark = pytest.mark.anyio

SECRET = "s3cr3t-pw"
_parts = urlsplit(URL)
HOST, PORT = _parts.hostname or "localhost", _parts.port or 5432
DATABASE = _parts.path.lstrip("/")


def url_with(*, user: str = "postgres", port: int = PORT, database: str = DATABASE, query: str = "") -> str:
    return urlunsplit(("postgresql", f"{user}:{SECRET}@{HOST}:{port}", f"/{database}", query, ""))


async def expect_unavailable(url: str, where: str) -> BrokerUnavailable:
    broker = PostgresBroker(url, clock=FakeClock())
    assert SECRET not in repr(broker) and SECRET not in broker.display_url
    with pytest.raises(BrokerUnavailable) as caught:
        await broker.open()
    message = str(caught.value)
    assert where in message
    assert SECRET not in message and SECRET not in repr(caught.value)
    await broker.close()
    return caught.value


async def test_unknown_user_is_unavailable_with_the_password_redacted() -> None:
    await expect_unavailable(url_with(user="asynctask_no_such_user"), f"{HOST}:{PORT}/{DATABASE}")


async def test_unreachable_server_is_unavailable() -> None:
    error = await expect_unavailable(url_with(port=1), f"{HOST}:1/{DATABASE}")
    assert isinstance(error, ConnectionError)


async def test_missing_database_is_unavailable() -> None:
    await expect_unavailable(url_with(database="asynctask_no_such_db"), f"{HOST}:{PORT}/asynctask_no_such_db")


async def test_calls_on_an_unopened_broker_say_so() -> None:
    with pytest.raises(BrokerError, match="not open"):
        await PostgresBroker(URL).get("x")


def test_urls_choose_the_broker_and_its_options() -> None:
    broker = broker_from_url(f"postgres://app:{SECRET}@db.example:6543/jobs?schema=work&notify=false")
    assert isinstance(broker, PostgresBroker)
    assert broker.schema == "work" and not broker.notify
    shown = "postgres://app:***@db.example:6543/jobs?schema=work&notify=false"
    assert repr(broker) == f"<PostgresBroker {shown} schema=work closed>"
    assert broker.capabilities.transactional_publish and not broker.capabilities.push_wakeups


def test_the_dsn_keeps_driver_options_and_drops_ours() -> None:
    opts = parse_url(
        f"postgresql://u:{SECRET}@h/db?sslmode=disable&schema=s&auto_migrate=1&pool_max_size=4&poll_interval=0.5"
    )
    assert opts.dsn == f"postgresql://u:{SECRET}@h/db?sslmode=disable"
    assert (opts.schema, opts.auto_migrate, opts.poll_interval) == ("s", True, 0.5)
    assert opts.pool_options == {"max_size": 4}
    assert SECRET not in repr(opts)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (f"postgresql://u:{SECRET}@h/db", "postgresql://u:***@h/db"),
        (f"postgresql://h/db?user=u&password={SECRET}", "postgresql://h/db?user=u&password=***"),
        ("postgresql://u@h/db", "postgresql://u@h/db"),
    ],
)
def test_passwords_are_redacted(url: str, shown: str) -> None:
    assert redact_url(url) == shown


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://h/db?notify=maybe",
        "postgresql://h/db?poll_interval=soon",
        "postgresql://h:port/db",
        "mysql://h/db",
    ],
)
def test_bad_urls_are_configuration_errors(url: str) -> None:
    with pytest.raises(ConfigurationError):
        PostgresBroker(url)


def test_a_pool_without_a_url_needs_notify_off() -> None:
    with pytest.raises(ConfigurationError, match="notify=False"):
        PostgresBroker(pool=object())
    assert not PostgresBroker(pool=object(), notify=False).capabilities.push_wakeups
