"""MongoDB URLs, options and errors: what a user types, what they see, never a password."""

from __future__ import annotations

import pytest

from asynctask.brokers import broker_from_url
from asynctask.brokers.mongo import MongoBroker
from asynctask.brokers.mongo.config import parse_url
from asynctask.errors import BrokerUnavailable, ConfigurationError

pytestmark = pytest.mark.anyio


def test_the_url_gives_database_prefix_and_options() -> None:
    opts = parse_url("mongodb://app:s3cret@db1:27017,db2:27017/jobs?replicaSet=rs0&prefix=billing&w=majority")
    assert (opts.database, opts.prefix, opts.target) == ("jobs", "billing", "db1:27017,db2:27017/jobs")
    assert opts.uri == "mongodb://app:s3cret@db1:27017,db2:27017/jobs?replicaSet=rs0&w=majority"
    assert (
        opts.display_url
        == "mongodb://app:***@db1:27017,db2:27017/jobs?replicaSet=rs0&prefix=billing&w=majority"
    )
    assert opts.transactions is None and opts.change_streams is None


def test_srv_urls_and_defaults() -> None:
    opts = parse_url(
        "mongodb+srv://cluster0.example.net/?transactions=false&change_streams=auto&poll_interval=0.5"
    )
    assert (opts.database, opts.prefix) == ("asynctask", "asynctask")
    assert (opts.transactions, opts.change_streams, opts.poll_interval) == (False, None, 0.5)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mongodb://db/jobs?prefix=a.b", "collection prefix"),
        ("mongodb://db/jobs?prefix=", "collection prefix"),
        ("mongodb://db/jobs?transactions=maybe", "transactions='maybe'"),
        ("mongodb://db/jobs?poll_interval=-1", "poll_interval"),
        ("mongodb://db/jobs?ttl_margin=soon", "ttl_margin"),
        ("mongodb:///jobs", "no host"),
        ("mongodb://db/bad.name", "database name"),
        ("postgresql://db/jobs", "not a MongoDB URL"),
    ],
)
def test_bad_urls_get_a_specific_error(url: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        parse_url(url)


def test_passwords_are_redacted_in_reprs_and_option_values() -> None:
    broker = broker_from_url("mongodb://app:s3cret@db/jobs?tlsCertificateKeyFilePassword=k3y&prefix=p")
    assert isinstance(broker, MongoBroker)
    assert "s3cret" not in repr(broker) and "k3y" not in repr(broker)
    assert broker.display_url == "mongodb://app:***@db/jobs?tlsCertificateKeyFilePassword=***&prefix=p"
    assert repr(broker) == f"<MongoBroker {broker.display_url} prefix=p closed>"


def test_a_client_or_a_url_not_both() -> None:
    with pytest.raises(ConfigurationError, match="either url= or client="):
        MongoBroker()
    with pytest.raises(ConfigurationError, match="either url= or client="):
        MongoBroker("mongodb://db/x", client=object())
    with pytest.raises(ConfigurationError, match="collection prefix"):
        MongoBroker("mongodb://db/x", prefix="no spaces")


async def test_an_unreachable_server_names_the_host_and_hides_the_password() -> None:
    broker = MongoBroker("mongodb://app:s3cret@127.0.0.1:1/jobs?serverSelectionTimeoutMS=300")
    with pytest.raises(BrokerUnavailable) as info:
        await broker.open()
    assert "127.0.0.1:1/jobs" in str(info.value)
    assert "s3cret" not in str(info.value)
    assert not broker.is_open
    await broker.close()  # harmless
