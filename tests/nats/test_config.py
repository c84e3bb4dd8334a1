"""NATS URLs: parsing, options, authentication against real servers, and secrets never shown."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import nkeys
import pytest

from asynctask.brokers import broker_from_url
from asynctask.brokers.nats import NatsBroker
from asynctask.brokers.nats.config import NatsConfig
from asynctask.errors import BrokerUnavailable, ConfigurationError, InvalidName
from asynctask.log import redact_url
from tests.nats.server import NatsServer, free_port

SECRET = "Sup3r-S3cret"


def test_a_plain_url() -> None:
    config = NatsConfig.from_url("nats://localhost")
    assert config.servers == ["nats://localhost:4222"]
    assert (config.user, config.password, config.token, config.creds, config.tls) == (None,) * 4 + (False,)
    assert (config.prefix, config.replicas, config.request_timeout) == ("asynctask", 1, 5.0)


def test_user_password_several_hosts_and_options() -> None:
    config = NatsConfig.from_url(
        f"nats://app:{SECRET}@n1:4223,[::1]:4224,n3?prefix=billing&replicas=3&name=api&request_timeout=2.5"
    )
    assert config.servers == ["nats://n1:4223", "nats://[::1]:4224", "nats://n3:4222"]
    assert (config.user, config.password) == ("app", SECRET)
    assert (config.prefix, config.replicas, config.name, config.request_timeout) == ("billing", 3, "api", 2.5)
    assert SECRET not in config.display_url and "app:***@" in config.display_url


@pytest.mark.parametrize("url", [f"nats://{SECRET}@host:4222", f"nats://host:4222?token={SECRET}"])
def test_a_token_in_the_user_info_or_an_option(url: str) -> None:
    config = NatsConfig.from_url(url)
    assert config.token == SECRET and config.user is None
    assert SECRET not in config.display_url
    assert SECRET not in redact_url(url)


def test_percent_encoded_secrets_are_decoded() -> None:
    config = NatsConfig.from_url("nats://app:p%40ss%3Aword@host")
    assert config.password == "p@ss:word"


def test_tls_and_credentials_files() -> None:
    config = NatsConfig.from_url("tls://host?creds=/etc/nats/app.creds&tls_ca=/etc/ca.pem")
    assert config.tls and config.servers == ["tls://host:4222"]
    assert (config.creds, config.tls_ca) == ("/etc/nats/app.creds", "/etc/ca.pem")
    assert NatsConfig.from_url("nats://host?tls_ca=/etc/ca.pem").tls, "a tls_* option implies TLS"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("nats://host:99999", "invalid port"),
        ("nats://host:abc", "invalid port"),
        ("nats://a,,b", "empty host"),
        ("nats://host/db", "no path"),
        ("nats://host?replicas=6", "replicas must be 1 to 5"),
        ("nats://host?replicas=x", "replicas must be 1 to 5"),
        ("nats://host?request_timeout=-1", "request_timeout must be a positive number"),
        ("nats://host?request_timeout=nan", "request_timeout must be a positive number"),
        ("nats://host?bogus=1&prefix=a", r"unknown option\(s\) bogus"),
        (f"nats://{SECRET}@host?token=other", "gives a token twice"),
        (f"nats://host?token={SECRET}&creds=/x.creds", "use one of a token, creds or nkey"),
        ("nats://host?nkey=/a.nk&creds=/x.creds", "not creds and nkey"),
    ],
)
def test_bad_urls_say_what_is_wrong_without_secrets(url: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message) as caught:
        NatsConfig.from_url(url)
    assert SECRET not in str(caught.value)


def test_a_bad_prefix_is_refused() -> None:
    with pytest.raises(InvalidName, match="invalid NATS prefix"):
        NatsConfig.from_url("nats://host?prefix=a.b")
    with pytest.raises(InvalidName, match="invalid NATS prefix"):
        NatsBroker("nats://host", prefix="$bad")


def test_the_broker_comes_from_the_url_and_never_shows_secrets() -> None:
    broker = broker_from_url(f"nats://app:{SECRET}@h1,h2?prefix=shop&replicas=3")
    assert isinstance(broker, NatsBroker)
    assert broker.layout.bucket == "shop_jobs" and broker.config.replicas == 3
    assert broker.display_url == "nats://app:***@h1,h2?prefix=shop&replicas=3"
    assert SECRET not in repr(broker)
    token = NatsBroker(f"tls://{SECRET}@h1", prefix="p")
    assert token.display_url == "tls://***@h1?prefix=p" and SECRET not in repr(token)
    assert broker.capabilities.push_wakeups


@pytest.mark.anyio
async def test_an_unreachable_server_names_the_hosts_not_the_password() -> None:
    port = free_port()
    broker = NatsBroker(f"nats://app:{SECRET}@127.0.0.1:{port}?connect_timeout=0.5")
    with pytest.raises(BrokerUnavailable, match=f"127.0.0.1:{port}") as caught:
        await broker.open()
    assert SECRET not in str(caught.value)
    await broker.close()


@pytest.fixture
def server_with(tmp_path: Path) -> object:
    started: list[NatsServer] = []

    def start(*args: str, executable: str | None = None) -> NatsServer:
        directory = tmp_path / f"s{len(started)}"
        directory.mkdir()
        server = NatsServer(directory, *args, name=f"s{len(started)}", executable=executable)
        started.append(server)
        server.start()
        return server

    yield start
    for server in started:
        server.kill()


@pytest.mark.anyio
async def test_user_and_password_against_a_server(
    server_with: object, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="asynctask")
    server = server_with("--user", "app", "--pass", SECRET)  # type: ignore[operator]
    host = f"127.0.0.1:{server.port}"
    good = NatsBroker(f"nats://app:{SECRET}@{host}", prefix="auth")
    await good.open()
    try:
        assert await good.enqueue([]) == []
        assert await good.get("nothing") is None
    finally:
        await good.store.drop()
        await good.close()
    bad = NatsBroker(f"nats://app:wrong-{SECRET}@{host}?connect_timeout=0.5")
    with pytest.raises(BrokerUnavailable, match=host) as caught:
        await bad.open()
    assert SECRET not in str(caught.value)
    assert SECRET not in caplog.text


@pytest.mark.anyio
async def test_a_token_against_a_server(server_with: object) -> None:
    server = server_with("--auth", SECRET)  # type: ignore[operator]
    good = NatsBroker(f"nats://{SECRET}@127.0.0.1:{server.port}", prefix="tok")
    await good.open()
    await good.store.drop()
    await good.close()
    with pytest.raises(BrokerUnavailable) as caught:
        await NatsBroker(f"nats://nope@127.0.0.1:{server.port}?connect_timeout=0.5").open()
    assert "nope" not in str(caught.value)


@pytest.mark.anyio
@pytest.mark.parametrize("option", ["creds", "nkey"])
async def test_a_missing_credentials_file_is_a_clear_error(option: str, tmp_path: Path) -> None:
    missing = tmp_path / "absent.creds"
    broker = NatsBroker(f"nats://127.0.0.1:{free_port()}?{option}={missing}")
    with pytest.raises(ConfigurationError, match=r"credentials file .*absent\.creds.* does not exist"):
        await broker.open()


@pytest.mark.anyio
async def test_an_nkey_seed_file_against_a_server(server_with: object, tmp_path: Path) -> None:
    seed = nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER)
    public = nkeys.from_seed(bytearray(seed)).public_key.decode()
    (tmp_path / "user.nk").write_bytes(seed)
    (tmp_path / "server.conf").write_text(f'authorization {{ users = [ {{ nkey: "{public}" }} ] }}\n')
    server = server_with("-c", str(tmp_path / "server.conf"))  # type: ignore[operator]
    broker = NatsBroker(f"nats://127.0.0.1:{server.port}?nkey={tmp_path / 'user.nk'}", prefix="nk")
    await broker.open()
    await broker.store.drop()
    await broker.close()
    with pytest.raises(BrokerUnavailable):
        await NatsBroker(f"nats://127.0.0.1:{server.port}?connect_timeout=0.5").open()


@pytest.mark.anyio
@pytest.mark.skipif(shutil.which("nats-server", path="/usr/sbin") is None, reason="no Debian nats-server")
async def test_a_server_older_than_2_12_1_is_refused_with_a_reason(server_with: object) -> None:
    server = server_with(executable="/usr/sbin/nats-server")  # type: ignore[operator]
    broker = NatsBroker(f"nats://127.0.0.1:{server.port}")
    with pytest.raises(ConfigurationError, match=r"is 2\.9\.\d+; the NATS broker needs 2\.12\.1 or later"):
        await broker.open()
