"""Developer sessions: ``nox -s lint types tests`` (the default), ``nox -s bench``."""

from __future__ import annotations

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


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks (not part of the test run); results land in benchmarks/results/."""
    session.install("-e", ".[all]")
    session.run("python", "-m", "benchmarks", *session.posargs)
