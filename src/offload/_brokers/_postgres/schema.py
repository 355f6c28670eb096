"""The PostgreSQL broker's schema: one per namespace, brought up to date by numbered migrations.

Every table lives in one schema per namespace (``offload``, or
``offload_{namespace}``), so several apps share a database without seeing
each other's jobs. ``meta`` holds ``schema_version``: the number of
migrations applied. ``migrate`` applies the missing ones in one
transaction under an advisory lock (two processes never run them at once;
DDL is transactional, so a failure leaves the old schema whole), and
refuses a schema migrated by a newer offload than this one.

The migrations are the files ``sql/migrations/NNN_*.sql``. A migration is
only ever appended, never edited: a released database has run the old text.
"""

from __future__ import annotations

import re
from typing import Any

import psycopg

from ..._errors import ConfigurationError
from ..._install import upgrade_hint
from .._files import numbered
from .queries import PACKAGE, fill, lock_id, render

MIGRATIONS: tuple[tuple[int, str], ...] = tuple(numbered(PACKAGE, "sql/migrations"))
"""(number, text) of each migration, in order; ``{s}`` names the schema (``queries.fill``)."""

SCHEMA_VERSION = len(MIGRATIONS)

_NAMESPACE = re.compile(r"[a-z0-9_]{1,48}")


def schema_name(namespace: str | None) -> str:
    """``offload``, or ``offload_{namespace}``; refuses what is not a plain identifier."""
    if namespace is None:
        return "offload"
    if not _NAMESPACE.fullmatch(namespace):
        raise ConfigurationError(
            f"namespace {namespace!r} cannot name a PostgreSQL schema: use 1 to 48 lower-case "
            "letters, digits or underscores (it becomes the schema offload_{namespace})"
        )
    return f"offload_{namespace}"


def schema_version(connection: psycopg.Connection[Any], schema: str) -> int:
    """The schema's version: 0 when offload never ran there."""
    return _version(connection, render(schema))


def _version(connection: psycopg.Connection[Any], statements: dict[str, str]) -> int:
    row = connection.execute(statements["meta_exists"]).fetchone()
    if row is None or row[0] is None:
        return 0
    found = connection.execute(statements["schema_version"]).fetchone()
    return 0 if found is None else int(found[0])


def refuse_newer(version: int, schema: str) -> None:
    if version > SCHEMA_VERSION:
        raise ConfigurationError(
            f"the PostgreSQL schema {schema!r} has offload schema version {version}, but "
            f"this offload only knows versions up to {SCHEMA_VERSION}: it was migrated by a "
            f"newer offload. {upgrade_hint()}"
        )


def check(connection: psycopg.Connection[Any], schema: str, *, migrating: bool) -> None:
    """Make sure ``schema`` is at this offload's version: migrate it, or say how.

    ``migrating``: bring an old schema up to date (the broker's ``migrate``
    option); else an old schema is refused, naming ``offload migrate``.
    """
    version = schema_version(connection, schema)
    refuse_newer(version, schema)
    if version == SCHEMA_VERSION:
        return
    if not migrating:
        raise ConfigurationError(
            f"the PostgreSQL schema {schema!r} is at offload schema version {version}, "
            f"this offload needs {SCHEMA_VERSION}: run `offload migrate` (or open the "
            "broker with migrate=True)"
        )
    migrate(connection, schema)


def migrate(connection: psycopg.Connection[Any], schema: str) -> int:
    """Bring ``schema`` up to date in one transaction; the version it is at.

    ``pg_advisory_xact_lock`` makes a second process wait for the first
    and then find nothing left to do; it is released at commit or rollback.
    """
    statements = render(schema)
    with connection.transaction():
        connection.execute(statements["migrate_lock"], (lock_id(f"migrate:{schema}"),))
        connection.execute(statements["create_schema"])
        connection.execute(statements["create_meta"])
        version = _version(connection, statements)
        refuse_newer(version, schema)
        for _, text in MIGRATIONS[version:]:
            # A file's statements in one call (no parameters: PostgreSQL's
            # simple protocol runs them in turn), inside this transaction.
            connection.execute(fill(text, schema))
        connection.execute(statements["set_version"], (str(SCHEMA_VERSION),))
    return SCHEMA_VERSION
