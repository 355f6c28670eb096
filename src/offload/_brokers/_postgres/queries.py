"""The statements of ``sql/queries.sql``, filled in for one schema, and the values they take.

``fill`` is the one place where anything is put into SQL text: the schema,
as a quoted identifier (``psycopg.sql.Identifier``), and constants of the
code (column lists, limits), never a value a caller passed. Every value of
a job is a bound parameter. A broker fills every statement once, when it is
made: what runs is a plain string, the same text every time (psycopg
prepares it on the server after a few runs).
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Mapping
from typing import Any

from psycopg import sql

from ..._message import DEFAULT_MAX_DELIVERIES, MAX_COUNT
from .._base import lapsed_error
from .._files import named_queries
from .._sql_rows import INFO_COLUMNS, MESSAGE_COLUMNS
from .values import error_columns

PACKAGE = __name__.rpartition(".")[0]
"""Where the ``sql/`` folder is (``importlib.resources`` reads it from the install)."""
_QUERIES = "sql/queries.sql"

# What the statements may name besides the schema: constants of the code,
# spelled once, here and in _sql_rows (which reads the columns back).
_CONSTANTS: dict[str, sql.Composable] = {
    "max_deliveries": sql.Literal(DEFAULT_MAX_DELIVERIES),
    "max_count": sql.Literal(MAX_COUNT),
    "info_columns": sql.SQL(INFO_COLUMNS),
    # The claim returns them from the updated row (``j``), after seq, due, token.
    "message_columns": sql.SQL(", ").join(
        sql.Identifier("j", name) for name in MESSAGE_COLUMNS.split(", ")
    ),
}

COPY_TYPES = (
    *("text", "text", "text", "int4", "float8", "float8", "int4", "int4"),
    *("text", "float8", "int4", "float8", "bytea", "float8", "text"),
)
"""The types of the inserted columns (``message_row``'s order): a binary COPY's, and
the arrays of the ``insert_many`` statement."""

_LAPSED_MARK = "987654321"  # where the delivery count goes in lapsed_error's text


CLAIM_CAPS = tuple(2**power for power in range(17))
"""The row caps of the claim statements: 1, 2, 4 ... 65536, one text per cap (``render``)."""


def fill(template: str, schema: str, cap: int = CLAIM_CAPS[-1]) -> str:
    """``template`` with ``{s}`` the quoted ``schema``, and the code's constants filled in.

    ``{tell}``: the fragment of that name in the file (the ack statements'
    news to a listening producer), spelled once there. ``{cap}``: the most
    rows a claim statement's text takes (``render`` makes one text per cap).
    """
    tell = sql.SQL(statements()["tell"])
    composed = sql.SQL(template).format(
        s=sql.Identifier(schema), tell=tell, cap=sql.Literal(cap), **_CONSTANTS
    )
    return composed.as_string(None)


def render(schema: str) -> dict[str, str]:
    """Every named statement of ``sql/queries.sql``, filled in for ``schema``.

    A claim statement (one that names ``{cap}``) once per cap of
    ``CLAIM_CAPS``, as ``name/cap``: ``claim_statement`` picks one.
    """
    filled: dict[str, str] = {}
    for name, text in statements().items():
        if "{cap}" in text:
            filled.update({f"{name}/{cap}": fill(text, schema, cap) for cap in CLAIM_CAPS})
        else:
            filled[name] = fill(text, schema)
    return filled


def claim_statement(statements: Mapping[str, str], name: str, limit: int) -> str:
    """The text of claim statement ``name`` whose cap is the least power of two >= ``limit``.

    The server then plans each text once (see the claim's note in
    queries.sql); a limit above the largest cap claims that many at most.
    """
    cap = 1 << max(0, limit - 1).bit_length()
    return statements[f"{name}/{min(cap, CLAIM_CAPS[-1])}"]


@functools.cache
def statements() -> Mapping[str, str]:
    """The named statements of the file, placeholders unfilled, without their notes.

    The comment lines that open a statement explain it to its reader; the
    server need not get them with every call (nor show them in
    ``pg_stat_activity``).
    """
    return {name: _without_notes(text) for name, text in named_queries(PACKAGE, _QUERIES).items()}


def _without_notes(text: str) -> str:
    lines = text.splitlines()
    while lines and lines[0].lstrip().startswith("--"):
        del lines[0]
    return "\n".join(lines)


def lock_id(text: str) -> int:
    """A signed 64-bit advisory-lock id for ``text`` (stable across processes)."""
    digest = hashlib.blake2b(text.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


@functools.cache
def _lapsed_columns() -> tuple[str | None, str | None, str | None]:
    return error_columns(lapsed_error(int(_LAPSED_MARK)))[:3]


def claim_params(now: float, until: float, limit: int, holder: str | None) -> dict[str, Any]:
    """The parameters of a claim, with the dead-letter error of a lapsed job."""
    etype, emsg, etb = _lapsed_columns()
    return {
        "holder": holder,
        "now": now,
        "until": until,
        "limit": limit,
        "etype": etype,
        "emsg": emsg,
        "etb": etb,
        "mark": _LAPSED_MARK,
    }


def as_columns(rows: list[tuple[Any, ...]]) -> list[list[Any]]:
    """Rows as one list per column: the arrays of an ``unnest`` statement."""
    return [list(column) for column in zip(*rows, strict=True)]
