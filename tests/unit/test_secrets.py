"""Passwords are never printed, however the URL is mistyped (issue #11, item 9)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from asynctask import App, MemoryBroker
from asynctask.brokers import broker_from_url
from asynctask.brokers.postgres.config import parse_url
from asynctask.brokers.redis import RedisBroker
from asynctask.errors import ConfigurationError
from asynctask.log import redact_url

app = App(MemoryBroker())  # for the CLI runs below


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://u:Ab12/Secret@host/db", "postgresql://u:***@host/db"),
        ("postgresql://u:Ab12?Secret@host/db", "postgresql://u:***@host/db"),
        ("postgresql://u:Ab12#Secret@host/db", "postgresql://u:***@host/db"),
        ("redis://:Ab12?Secret@cache:6379/0", "redis://:***@cache:6379/0"),
        ("redis://:1234/5678@cache:6379/0", "redis://:***@cache:6379/0"),
        ("postgresql://u:Ab12/Se@cret@host/db?sslmode=require", "postgresql://u:***@host/db?sslmode=require"),
        ("user:secret@host/db", "***@host/db"),
        ("postgresql://u:p@h1:5432,h2:5433/db", "postgresql://u:***@h1:5432,h2:5433/db"),
        ("postgresql:///db?host=/run/postgresql", "postgresql:///db?host=/run/postgresql"),
    ],
)
def test_redact_url_hides_passwords_with_reserved_characters(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_a_url_without_scheme_is_refused_without_its_password() -> None:
    with pytest.raises(ConfigurationError, match="no scheme") as info:
        broker_from_url("user:secret@host/db")
    assert "secret" not in str(info.value)


@pytest.mark.parametrize(
    "url",
    [
        "redis://:Ab12?Secret@cache:6379/0",
        "redis://:Ab12?Secret@cache:6379/0?prefix=app",
        "redis://:Ab12#Secret@cache:6379/0",
        "redis://:Ab12/Secret@cache:6379/0",
    ],
)
def test_an_invalid_redis_url_is_shown_redacted(url: str) -> None:
    with pytest.raises(ConfigurationError, match="invalid Redis URL") as info:
        RedisBroker.from_url(url)
    assert "Ab12" not in str(info.value) and "Secret" not in str(info.value)


def test_an_invalid_postgres_url_is_shown_redacted() -> None:
    with pytest.raises(ConfigurationError, match="percent-encode") as info:
        parse_url("postgresql://u:Ab12/Secret@127.0.0.1:5432/db")
    assert "Ab12" not in str(info.value) and "Secret" not in str(info.value)


@pytest.mark.parametrize(
    "url",
    ["user:secret@host/db", "redis://:Ab12?secret@cache:6379/0", "postgresql://u:Ab12/secret@127.0.0.1:1/db"],
)
def test_the_worker_command_does_not_print_the_password(url: str) -> None:
    run = subprocess.run(
        [
            sys.executable,
            "-c",
            "from asynctask.cli import main; main()",
            "worker",
            f"{__name__}:app",
            "--broker",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode != 0
    output = run.stdout + run.stderr
    assert "error" in output
    assert "secret" not in output and "Ab12" not in output, output
