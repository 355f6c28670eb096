"""The SQLite broker's schema and statements, read from the ``sql`` folder beside this module.

``sql/migrations/NNN_*.sql`` are applied in order; ``offload_meta`` holds
``schema_version``, the number applied. Opening a database applies the
missing ones in one ``BEGIN IMMEDIATE`` transaction (many processes may
open the file at once: the write lock makes one of them migrate and the
others see the result), and refuses a database migrated by a newer offload
than this one. A migration is only ever appended, never edited: a released
database has run the old text.

``sql/queries.sql`` holds every other statement, by name (``QUERIES``).
"""

from __future__ import annotations

import sqlite3

from ..._errors import ConfigurationError
from ..._install import upgrade_hint
from .._files import named_queries, numbered
from .._sql_rows import INFO_COLUMNS, MESSAGE_COLUMNS

PACKAGE = __name__.rpartition(".")[0]

MINIMUM_SQLITE = (3, 35, 0)
"""``UPDATE ... RETURNING`` arrived in SQLite 3.35 (2021)."""


def split_script(script: str) -> tuple[str, ...]:
    """The statements of a script, cut where SQLite's own tokenizer says one is complete.

    ``executescript`` would run them all at once, but it commits first: a
    migration must run inside the transaction that holds the write lock.
    A ``;`` inside a comment or a string does not end a statement.
    """
    statements: list[str] = []
    *pieces, pending = script.split(";")  # pending: what follows the last ';'
    chunk = ""
    for piece in pieces:
        chunk += piece + ";"
        if sqlite3.complete_statement(chunk):
            statement = chunk.strip().removesuffix(";").strip()
            if _without_comments(statement).strip():
                statements.append(statement)
            chunk = ""
    if _without_comments(chunk + pending).strip():
        raise ValueError(f"a migration ends without a ';': {(chunk + pending).strip()[:60]!r}")
    return tuple(statements)


def _without_comments(sql: str) -> str:
    """``sql`` without its lines that are only a comment."""
    return "\n".join(line for line in sql.splitlines() if not line.lstrip().startswith("--"))


def _load_queries() -> dict[str, str]:
    queries: dict[str, str] = {}
    for name, text in named_queries(PACKAGE, "sql/queries.sql").items():
        # Comment lines dropped: Python 3.10's sqlite3 takes a statement that
        # starts with a comment for a query, and executemany() refuses it.
        sql = _without_comments(text).strip()
        queries[name] = sql.replace("{message_columns}", MESSAGE_COLUMNS).replace(
            "{info_columns}", INFO_COLUMNS
        )
    return queries


MIGRATIONS: tuple[tuple[str, ...], ...] = tuple(
    split_script(text) for _, text in numbered(PACKAGE, "sql/migrations")
)
"""The statements of each migration, in order: ``MIGRATIONS[0]`` is ``001_*.sql``."""

SCHEMA_VERSION = len(MIGRATIONS)

QUERIES = _load_queries()
"""Every statement of ``sql/queries.sql``, by its name."""


def check_sqlite_version() -> None:
    if sqlite3.sqlite_version_info < MINIMUM_SQLITE:
        needed = ".".join(map(str, MINIMUM_SQLITE))
        raise ConfigurationError(
            f"the SQLite broker needs SQLite {needed} or newer (for UPDATE ... RETURNING); "
            f"this Python's sqlite3 module uses SQLite {sqlite3.sqlite_version}. Use a newer "
            "Python build (python.org and most distributions ship a recent SQLite), or "
            "another broker."
        )


def migrate(connection: sqlite3.Connection, path: str) -> int:
    """Bring the schema up to date, in one transaction; the version it is at."""
    if _version(connection) == SCHEMA_VERSION:
        return SCHEMA_VERSION  # the usual case: a read, no write lock
    connection.execute("BEGIN IMMEDIATE")
    try:
        connection.execute(QUERIES["create_meta"])
        version = _version(connection)  # again, under the write lock
        if version > SCHEMA_VERSION:
            raise ConfigurationError(
                f"{path} has offload schema version {version}, but this offload only knows "
                f"versions up to {SCHEMA_VERSION}: it was written by a newer offload. "
                f"{upgrade_hint()}"
            )
        for statements in MIGRATIONS[version:]:
            for statement in statements:
                connection.execute(statement)
        connection.execute(QUERIES["set_schema_version"], (SCHEMA_VERSION,))
        connection.execute("COMMIT")
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    return SCHEMA_VERSION


def _version(connection: sqlite3.Connection) -> int:
    try:
        row = connection.execute(QUERIES["schema_version"]).fetchone()
    except sqlite3.OperationalError:  # no offload_meta table: a new database
        return 0
    return 0 if row is None else int(row[0])
