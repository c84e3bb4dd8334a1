"""The broker's SQL text: named queries, numbered migrations and the reference schema.

Query text lives in ``sql/*.sql`` files, never in f-strings. The one thing substituted into it
is the schema name, validated against :data:`SCHEMA_NAME` and double-quoted, once, when the
files are loaded: every other value travels as a ``$n`` parameter.

``queries.sql`` also holds fragments (``-- fragment: x``), clauses that several queries share:
a line holding only ``__x__`` in a query stands for fragment ``x``, indented as that line.
:data:`VARIANTS` are queries loaded a second time without one of their fragments.

>>> queries("asynctask")["get"].splitlines()[0]
'SELECT * FROM "asynctask".jobs'
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from importlib import resources

from asynctask.errors import InvalidName

__all__ = [
    "SCHEMA_NAME",
    "VARIANTS",
    "Migration",
    "migrations",
    "queries",
    "reference_schema",
    "validate_schema",
]

#: What a schema name may look like: an unquoted Postgres identifier, lower case, ≤ 63 bytes.
SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")

_PACKAGE = "asynctask.brokers.postgres"
_PLACEHOLDER = "__schema__"
_HEADER = re.compile(r"^-- (name|fragment): ([a-z_]+)\s*$", re.MULTILINE)
_USE = re.compile(r"^( *)__([a-z_]+)__\n", re.MULTILINE)

#: {variant: (query, fragment)}: ``query`` without ``fragment``, under the variant's name.
#: ``enqueue_fresh``: a plain insert, for a batch whose ids are all new (see publishing.py).
VARIANTS = {"enqueue_fresh": ("enqueue", "on_conflict")}
_MIGRATION_FILE = re.compile(r"^(\d{3})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    """One forward-only migration file, ``sql/migrations/NNN_name.sql``."""

    version: int
    name: str
    sql: str


def validate_schema(schema: str) -> str:
    """Return ``schema`` if it is a valid schema name, else raise :class:`InvalidName`."""
    if not SCHEMA_NAME.fullmatch(schema):
        raise InvalidName(
            f"invalid Postgres schema name {schema!r}: use lower-case letters, digits and "
            "underscores, starting with a letter or underscore, at most 63 characters"
        )
    return schema


def _render(text: str, schema: str) -> str:
    # The name is validated, so quoting cannot be escaped; quotes still protect reserved words.
    return text.replace(_PLACEHOLDER, f'"{validate_schema(schema)}"')


def _read(*parts: str) -> str:
    return resources.files(_PACKAGE).joinpath("sql", *parts).read_text(encoding="utf-8")


def parse_queries(text: str) -> dict[str, str]:
    """Split a ``queries.sql`` text into ``{name: sql}`` on its ``-- name: x`` headers, with the
    fragments written in, plus the :data:`VARIANTS`."""
    chunks = _HEADER.split(text)
    # chunks = [preamble, kind1, name1, body1, kind2, name2, body2, ...]
    found: dict[str, str] = {}
    fragments: dict[str, str] = {}
    for kind, name, body in zip(chunks[1::3], chunks[2::3], chunks[3::3], strict=True):
        into = found if kind == "name" else fragments
        if name in into:
            raise ValueError(f"{kind} {name!r} is defined twice")
        into[name] = body.strip()

    def write(sql: str, leave_out: str | None = None) -> str:
        def use(match: re.Match[str]) -> str:
            indent, name = match[1], match[2]
            if name == leave_out:
                return ""
            if name not in fragments:
                raise ValueError(f"no fragment {name!r}")
            body = fragments[name].splitlines()
            return "".join(
                f"{indent}{line}\n" if line else "\n" for line in body if not line.startswith("--")
            )

        return _USE.sub(use, sql + "\n").strip()

    queries = {name: write(sql) for name, sql in found.items()}
    for variant, (query, fragment) in VARIANTS.items():
        if query in found:
            queries[variant] = write(found[query], leave_out=fragment)
    return queries


@cache
def queries(schema: str) -> dict[str, str]:
    """Every named query, rendered for ``schema``."""
    return {name: _render(sql, schema) for name, sql in parse_queries(_read("queries.sql")).items()}


@cache
def migrations(schema: str) -> tuple[Migration, ...]:
    """The migrations in version order, rendered for ``schema``."""
    found: list[Migration] = []
    for entry in resources.files(_PACKAGE).joinpath("sql", "migrations").iterdir():
        match = _MIGRATION_FILE.match(entry.name)
        if match:
            text = entry.read_text(encoding="utf-8")
            found.append(Migration(int(match[1]), match[2], _render(text, schema)))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise RuntimeError(f"migration versions must be 1..n without gaps, found {versions}")
    return tuple(found)


def latest_version() -> int:
    """The schema version this code expects."""
    return len(migrations("asynctask"))


def reference_schema(schema: str) -> str:
    """``sql/schema.sql`` rendered for ``schema``: what applying every migration produces."""
    return _render(_read("schema.sql"), schema)
