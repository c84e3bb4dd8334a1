"""Developer sessions: ``nox -s lint types tests`` (the default), ``nox -s bench``."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import nox

nox.options.sessions = ["lint", "types", "tests"]
nox.options.reuse_existing_virtualenvs = True


@nox.session
def lint(session: nox.Session) -> None:
    """ruff: lint and formatting."""
    session.install("ruff>=0.6")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def types(session: nox.Session) -> None:
    """mypy --strict on the package, plus a file that checks typed publish."""
    session.install("-e", ".[all]", "mypy>=1.11")
    session.run("mypy", "--strict", "asynctask", "tests/typing")


@nox.session
def tests(session: nox.Session) -> None:
    """The test suite (needs PostgreSQL and Redis on 127.0.0.1; see README)."""
    session.install("-e", ".[test]")
    session.run("pytest", *session.posargs)


def lowest_drivers() -> list[str]:
    """``name==floor`` for the drivers of the postgres and redis extras, read from pyproject.toml."""
    extras = tomllib.loads(Path("pyproject.toml").read_text())["project"]["optional-dependencies"]
    pins = []
    for requirement in (*extras["postgres"], *extras["redis"]):
        name, floor = re.fullmatch(r"([\w\[\]-]+)>=([\w.]+)", requirement).groups()  # type: ignore[union-attr]
        pins.append(f"{name}=={floor}")
    return pins


@nox.session
def lowest(session: nox.Session) -> None:
    """The Redis and Postgres broker tests on the lowest driver versions pyproject.toml declares
    (redis 5.3.0 and asyncpg 0.29.0 when this was written); posargs go to pytest."""
    session.install("-e", ".[test]")
    session.install(*lowest_drivers())
    probe = "import redis, asyncpg; print('redis', redis.__version__, 'asyncpg', asyncpg.__version__)"
    session.run("python", "-c", probe)
    session.run("pytest", "tests/redis", "tests/postgres", "-x", *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks (not part of the test run); results land in benchmarks/results/."""
    session.install("-e", ".[all]")
    session.run("python", "-m", "benchmarks", *session.posargs)
