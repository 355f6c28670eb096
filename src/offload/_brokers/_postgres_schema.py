"""The PostgreSQL broker's schema and SQL: numbered migrations, and the statements.

Every table lives in one schema per namespace (``offload``, or
``offload_{namespace}``), so several apps share a database without seeing
each other's jobs. ``meta`` holds ``schema_version``: the number of
migrations applied. ``migrate`` applies the missing ones in one
transaction under an advisory lock (two processes never run them at once;
DDL is transactional, so a failure leaves the old schema whole), and
refuses a schema migrated by a newer offload than this one.

A migration is only ever appended, never edited: a released database has
run the old text. Statements name the schema as ``{s}``; ``render``
fills it in once per broker (a validated identifier, never user data).

Time is never ``now()`` here: every instant is a parameter from the
broker's injected clock, so tests drive leases and ETAs with a fake one.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Sequence
from typing import Any

import psycopg

from .._errors import ConfigurationError
from .._message import (
    DEFAULT_MAX_DELIVERIES,
    MAX_COUNT,
    Delivery,
    ErrorInfo,
    Message,
    name_problem,
    option_problem,
    storable,
)
from ._base import lapsed_error
from ._sql_rows import INFO_COLUMNS, MESSAGE_COLUMNS, REJECTED, claimed_delivery, error_row

# Live states, spelled once: a partial index is only used by a query whose
# WHERE clause implies its condition.
LIVE = "state IN ('queued', 'retrying', 'running')"
# A due time no offload writes (eta and retry times end before the year 3000,
# leases are short), true for NaN as well: PostgreSQL sorts NaN above every
# number. A literal, never a constant of the code: a migration's text is fixed.
_UNTIMELY = "due >= 32503680000::float8"

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    # 1: jobs, the token sequence, and the indexes of the claim, lease, key and prune queries.
    (
        # Fencing tokens: unique across the namespace's jobs (a worker keys
        # what it runs by token), never reused, not even after a job is deleted.
        "CREATE SEQUENCE {s}.tokens",
        """
        CREATE TABLE {s}.jobs (
            seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,  -- age order
            id text NOT NULL,
            task text NOT NULL,
            queue text NOT NULL,
            priority integer NOT NULL DEFAULT 0,
            state text NOT NULL DEFAULT 'queued' CHECK (state IN
                ('queued', 'running', 'retrying', 'succeeded', 'failed', 'cancelled')),
            due double precision NOT NULL,  -- queued/retrying: claimable from; running: lease end
            eta double precision,
            attempt integer NOT NULL DEFAULT 0,
            token bigint NOT NULL DEFAULT 0,
            max_deliveries integer,
            key text,
            timeout double precision,
            retries integer,
            created double precision NOT NULL,
            payload bytea,
            result_ttl double precision,
            meta text,
            finished double precision,
            expires double precision,  -- when prune deletes it; NULL while live and when failed
            result bytea,
            error_type text,
            error_message text,
            error_traceback text,
            CONSTRAINT jobs_id UNIQUE (id)
        )
        """,
        # The claim over all queues: highest priority, then earliest due, then age.
        f"CREATE INDEX jobs_ready ON {{s}}.jobs (priority DESC, due, seq) WHERE {LIVE}",
        # The claim of named queues, one queue at a time in the worker's order.
        f"CREATE INDEX jobs_queue ON {{s}}.jobs (queue, priority DESC, due, seq) WHERE {LIVE}",
        # Lapsed leases, for the dead-letter sweep of every claim: running jobs only.
        "CREATE INDEX jobs_lease ON {s}.jobs (due) WHERE state = 'running'",
        # Key lookups (the live holder, or a success within the reuse window).
        "CREATE INDEX jobs_key ON {s}.jobs (key) WHERE key IS NOT NULL",
        # A safety net under the advisory key lock: one live job per key,
        # whatever a caller's isolation level hides from the check.
        f"CREATE UNIQUE INDEX jobs_live_key ON {{s}}.jobs (key) WHERE key IS NOT NULL AND {LIVE}",
        "CREATE INDEX jobs_expires ON {s}.jobs (expires) WHERE expires IS NOT NULL",
    ),
    # 2: the exception's args (ErrorInfo.args), and the index of the sweep that
    # makes a live job whose due time is no time (NaN, infinite, after the
    # year 3000: written by something else than offload) claimable again.
    (
        "ALTER TABLE {s}.jobs ADD COLUMN error_args text",
        f"CREATE INDEX jobs_untimely ON {{s}}.jobs (seq) WHERE {LIVE} AND {_UNTIMELY}",
    ),
)

SCHEMA_VERSION = len(MIGRATIONS)

_NAMESPACE = re.compile(r"[a-z0-9_]{1,48}")

# -- columns and statements ------------------------------------------------------

# In the order of message_row, which builds the rows.
_INSERT_COLUMNS = (
    "id, task, queue, priority, due, eta, attempt, max_deliveries, key, timeout, retries, "
    "created, payload, result_ttl, meta"
)
# Array types of those columns, for the one-statement batch insert.
_ARRAY_TYPES = (
    "text",
    "text",
    "text",
    "int4",
    "float8",
    "float8",
    "int4",
    "int4",
    "text",
    "float8",
    "int4",
    "float8",
    "bytea",
    "float8",
    "text",
)

COPY_TYPES = _ARRAY_TYPES
"""The column types of a binary COPY of inserted rows."""

# One statement, one round trip: the rows and the wake-up commit together
# (a NOTIFY is delivered only if its transaction commits). One notification
# per queue per transaction: PostgreSQL folds identical ones.
_INSERT_ONE = (
    "WITH ins AS (INSERT INTO {s}.jobs ("
    + _INSERT_COLUMNS
    + ", state) VALUES ("
    + ", ".join(["%s"] * len(_ARRAY_TYPES))
    + ", 'queued')) SELECT pg_notify(%s, %s)"
)
_INSERT_MANY = (
    "WITH ins AS (INSERT INTO {s}.jobs (" + _INSERT_COLUMNS + ", state) SELECT *, 'queued' "
    "FROM unnest(" + ", ".join(f"%s::{kind}[]" for kind in _ARRAY_TYPES) + ")) "
    "SELECT pg_notify(%s, q) FROM unnest(%s::text[]) AS q"
)

# A lapsed job that was delivered max_deliveries times is dead-lettered in
# the same statement as the claim, which skips it.
# (No max_deliveries stored: DEFAULT_MAX_DELIVERIES, not forever.)
_EXHAUSTED = f"state = 'running' AND attempt >= coalesce(max_deliveries, {DEFAULT_MAX_DELIVERIES})"
_LAPSED_MARK = "987654321"  # where the delivery count goes in lapsed_error's text
_CLAIM = (
    "WITH dead AS ("
    " UPDATE {s}.jobs SET state = 'failed', finished = %(now)s, expires = NULL,"
    " error_type = %(etype)s, error_message = replace(%(emsg)s, %(mark)s, attempt::text),"
    " error_traceback = %(etb)s, error_args = NULL"
    f" WHERE {_EXHAUSTED} AND due <= %(now)s"
    "), picked AS ("
    f" SELECT seq, due FROM {{s}}.jobs WHERE {LIVE} AND due <= %(now)s{{queue}}"
    f" AND NOT ({_EXHAUSTED})"
    " ORDER BY priority DESC, due, seq LIMIT %(limit)s FOR UPDATE SKIP LOCKED"
    # least(): a stored attempt at the integer's limit must not make the
    # statement (every worker's claim) fail; past MAX_COUNT, the delivery is
    # a defect, dead-lettered by the runner.
    f") UPDATE {{s}}.jobs AS j SET state = 'running', attempt = least(j.attempt, {MAX_COUNT}) + 1,"
    " due = %(until)s,"
    " token = nextval('{s}.tokens') FROM picked WHERE j.seq = picked.seq"
    " RETURNING j.seq, picked.due, j.token, "
    + ", ".join(f"j.{name}" for name in MESSAGE_COLUMNS.split(", "))
)

_FENCE = "id = %(id)s AND token = %(token)s AND state = 'running'"
_ACK = (
    "UPDATE {s}.jobs SET state = %(state)s, finished = %(now)s, expires = %(expires)s, "
    "result = %(result)s, error_type = %(etype)s, error_message = %(emsg)s, "
    f"error_traceback = %(etb)s, error_args = %(eargs)s WHERE {_FENCE} RETURNING id, token"
)
_ACK_MANY = (
    "WITH v AS (SELECT * FROM unnest(%s::text[], %s::int8[], %s::text[], %s::float8[], "
    "%s::float8[], %s::bytea[], %s::text[], %s::text[], %s::text[], %s::text[], %s::bool[]) "
    "AS v(id, token, state, finished, expires, result, etype, emsg, etb, eargs, drop)), "
    "d AS (DELETE FROM {s}.jobs AS j USING v WHERE v.drop AND j.id = v.id "
    "AND j.token = v.token AND j.state = 'running' RETURNING j.id, j.token), "
    "u AS (UPDATE {s}.jobs AS j SET state = v.state, finished = v.finished, "
    "expires = v.expires, result = v.result, error_type = v.etype, error_message = v.emsg, "
    "error_traceback = v.etb, error_args = v.eargs FROM v WHERE NOT v.drop AND j.id = v.id "
    "AND j.token = v.token AND j.state = 'running' RETURNING j.id, j.token) "
    "SELECT id, token FROM d UNION ALL SELECT id, token FROM u"
)
_NACK = (
    "WITH u AS (UPDATE {s}.jobs SET state = %(state)s, due = %(due)s, "
    "eta = coalesce(%(eta)s, eta), attempt = attempt - %(back)s, "
    "error_type = CASE WHEN %(keep)s THEN error_type ELSE %(etype)s END, "
    "error_message = CASE WHEN %(keep)s THEN error_message ELSE %(emsg)s END, "
    "error_traceback = CASE WHEN %(keep)s THEN error_traceback ELSE %(etb)s END, "
    "error_args = CASE WHEN %(keep)s THEN error_args ELSE %(eargs)s END "
    f"WHERE {_FENCE} RETURNING queue) SELECT pg_notify(%(channel)s, queue) FROM u"
)
_WAITING = "id = %(id)s AND state IN ('queued', 'retrying')"
_CANCEL = (
    "WITH d AS (DELETE FROM {s}.jobs WHERE "
    f"{_WAITING} AND coalesce(result_ttl, %(ttl)s) <= 0 RETURNING 1), "
    "u AS (UPDATE {s}.jobs SET state = 'cancelled', finished = %(now)s, "
    f"expires = %(now)s + coalesce(result_ttl, %(ttl)s) WHERE {_WAITING} "
    "AND coalesce(result_ttl, %(ttl)s) > 0 RETURNING 1) "
    "SELECT (SELECT count(*) FROM d) + (SELECT count(*) FROM u)"
)
_HOLDERS = (
    "SELECT DISTINCT ON (key) key, id FROM {s}.jobs WHERE key = ANY(%s) "
    f"AND ({LIVE} OR (state = 'succeeded' AND finished > %s)) "
    "ORDER BY key, state = 'succeeded', seq DESC"
)

_STATEMENTS: dict[str, str] = {
    "insert_one": _INSERT_ONE,
    "insert_many": _INSERT_MANY,
    "copy": "COPY {s}.jobs (" + _INSERT_COLUMNS + ") FROM STDIN (FORMAT BINARY)",
    "notify": "SELECT pg_notify(%s, q) FROM unnest(%s::text[]) AS q",
    "claim": _CLAIM.replace("{queue}", ""),
    "claim_queue": _CLAIM.replace("{queue}", " AND queue = %(queue)s"),
    "ack": _ACK,
    "ack_delete": f"DELETE FROM {{s}}.jobs WHERE {_FENCE} RETURNING id, token",
    "ack_many": _ACK_MANY,
    "nack": _NACK,
    "extend": f"UPDATE {{s}}.jobs SET due = %(until)s WHERE {_FENCE}",
    "holders": _HOLDERS,
    "ids_stored": "SELECT count(*) FROM {s}.jobs WHERE id = ANY(%s)",
    "next_due": f"SELECT min(due) FROM {{s}}.jobs WHERE {LIVE}",
    "next_due_in": f"SELECT min(due) FROM {{s}}.jobs WHERE {LIVE} AND queue = ANY(%s)",
    "job": f"SELECT {INFO_COLUMNS} FROM {{s}}.jobs WHERE id = %s",
    "states": "SELECT id, state FROM {s}.jobs WHERE id = ANY(%s)",
    "counts": "SELECT queue, state, count(*) FROM {s}.jobs GROUP BY queue, state",
    "jobs": (
        f"SELECT {INFO_COLUMNS} FROM {{s}}.jobs WHERE (%(state)s::text IS NULL OR "
        "state = %(state)s) AND (%(queue)s::text IS NULL OR queue = %(queue)s) "
        "ORDER BY seq DESC LIMIT %(limit)s"
    ),
    "cancel": _CANCEL,
    "retry_find": "SELECT key, state FROM {s}.jobs WHERE id = %s FOR UPDATE",
    "key_held": f"SELECT 1 FROM {{s}}.jobs WHERE key = %s AND {LIVE}",
    "retry": (
        "WITH u AS (UPDATE {s}.jobs SET state = 'queued', attempt = 0, due = %(now)s, "
        "eta = NULL, finished = NULL, expires = NULL, result = NULL, error_type = NULL, "
        "error_message = NULL, error_traceback = NULL, error_args = NULL WHERE id = %(id)s "
        "RETURNING queue) "
        "SELECT pg_notify(%(channel)s, queue) FROM u"
    ),
    "purge": (
        "DELETE FROM {s}.jobs WHERE state = %(state)s "
        "AND (%(queue)s::text IS NULL OR queue = %(queue)s)"
    ),
    "prune": "DELETE FROM {s}.jobs WHERE expires <= %s",
    # A live job whose due time is no time would wait (or hold its lease)
    # forever: due now instead. Claimed, it runs, or is dead-lettered if its
    # eta is as broken (read_delivery says why). Uses jobs_untimely (empty).
    "unstick": f"UPDATE {{s}}.jobs SET due = %s WHERE {LIVE} AND {_UNTIMELY}",
    # Opportunistic pruning: a bounded batch, skipping rows others hold.
    "prune_some": (
        "DELETE FROM {s}.jobs WHERE seq IN (SELECT seq FROM {s}.jobs WHERE expires <= %s "
        "LIMIT %s FOR UPDATE SKIP LOCKED)"
    ),
}


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


def render(schema: str) -> dict[str, str]:
    """Every statement, with the schema filled in."""
    quoted = f'"{schema}"'
    return {name: text.replace("{s}", quoted) for name, text in _STATEMENTS.items()}


def lock_id(text: str) -> int:
    """A signed 64-bit advisory-lock id for ``text`` (stable across processes)."""
    digest = hashlib.blake2b(text.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


@functools.cache
def _lapsed_columns() -> tuple[str | None, str | None, str | None]:
    return error_columns(lapsed_error(int(_LAPSED_MARK)))[:3]


def claim_params(now: float, until: float, limit: int) -> dict[str, Any]:
    """The parameters of a claim, with the dead-letter error of a lapsed job."""
    etype, emsg, etb = _lapsed_columns()
    return {
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


# -- rows PostgreSQL's driver needs --------------------------------------------------
#
# Rows are read back through _sql_rows, shared with the SQLite broker.


def row_delivery(row: Sequence[Any], until: float) -> Delivery:
    """A claimed row (``seq, due, token, MESSAGE_COLUMNS``): whole, or a defect saying why."""
    return claimed_delivery(row[2], row[3:], until)


def error_columns(
    error: ErrorInfo | None,
) -> tuple[str | None, str | None, str | None, str | None]:
    """``error_row``'s type, message, traceback, args: texts PostgreSQL takes (no NUL, no
    lone surrogate)."""
    etype, emsg, etb, eargs = error_row(error)
    return _storable(etype), _storable(emsg), _storable(etb), _storable(eargs)


def _storable(text: str | None) -> str | None:
    return None if text is None else storable(text)


def storable_text(value: object) -> bool:
    """Whether PostgreSQL can hold ``value`` as text (no NUL, no lone surrogate)."""
    return type(value) is str and storable(value) == value


# -- values PostgreSQL refuses ---------------------------------------------------------

_KEY_BYTES = 2000
"""PostgreSQL indexes a key of up to about 2,700 bytes (a third of a page)."""


def refused_for_values(error: BaseException) -> bool:
    """Whether ``error`` is the server or the driver refusing a statement's values.

    Those fail the same way every time (not an outage, not a race): a NUL or
    a lone surrogate in a text, an integer out of range, an index entry too
    large, a value psycopg cannot adapt.
    """
    if isinstance(error, (psycopg.DataError, psycopg.errors.ProgramLimitExceeded, UnicodeError)):
        return True
    return isinstance(error, psycopg.ProgrammingError) and error.sqlstate is None


def outcome_refused(job_id: str, error: BaseException) -> ErrorInfo:
    """The error recorded for a job whose outcome PostgreSQL refused to store."""
    return ErrorInfo(
        REJECTED,
        storable(
            f"the outcome of job {job_id} could not be stored: PostgreSQL refused it "
            f"({type(error).__name__}: {str(error)[:300]}), so the job is recorded as failed "
            "with this error instead. Make the task return a value (or raise an error) that "
            "the serializer encodes, then retry the job"
        ),
        "",
    )


def enqueue_refused(messages: Sequence[Message], error: BaseException) -> ConfigurationError:
    """offload's error for a batch PostgreSQL refused: which message, and what in it."""
    for message in messages:
        problem = (
            (None if storable_text(message.id) else "the job id has a NUL or a lone surrogate")
            or name_problem(message.task, "the task name")
            or option_problem(message)
            or _key_size_problem(message.key)
        )
        if problem is not None:
            return ConfigurationError(
                f"job {message.id!r:.60} (task {message.task!r:.80}) cannot be stored: {problem}"
            )
    return ConfigurationError(
        f"PostgreSQL refused this batch of {len(messages)} messages "
        f"({type(error).__name__}: {str(error)[:300]})"
    )


def _key_size_problem(key: str | None) -> str | None:
    size = 0 if key is None else len(key.encode("utf-8"))
    if size <= _KEY_BYTES:
        return None
    return (
        f"the key is {size:,} bytes of UTF-8, over the {_KEY_BYTES:,} that PostgreSQL "
        "indexes: use a shorter key (a hash of a long one, for example)"
    )


# -- migrations ------------------------------------------------------------------


def schema_version(connection: psycopg.Connection[Any], schema: str) -> int:
    """The schema's version: 0 when offload never ran there."""
    row = connection.execute("SELECT to_regclass(%s)", (f'"{schema}".meta',)).fetchone()
    if row is None or row[0] is None:
        return 0
    found = connection.execute(
        f"SELECT value FROM \"{schema}\".meta WHERE name = 'schema_version'"
    ).fetchone()
    return 0 if found is None else int(found[0])


def refuse_newer(version: int, schema: str) -> None:
    if version > SCHEMA_VERSION:
        raise ConfigurationError(
            f"the PostgreSQL schema {schema!r} has offload schema version {version}, but "
            f"this offload only knows versions up to {SCHEMA_VERSION}: it was migrated by a "
            "newer offload. Upgrade offload (pip install -U offload) in this environment."
        )


def migrate(connection: psycopg.Connection[Any], schema: str) -> int:
    """Bring ``schema`` up to date in one transaction; the version it is at.

    ``pg_advisory_xact_lock`` makes a second process wait for the first
    and then find nothing left to do; it is released at commit or rollback.
    """
    with connection.transaction():
        connection.execute("SELECT pg_advisory_xact_lock(%s)", (lock_id(f"migrate:{schema}"),))
        connection.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        connection.execute(
            f'CREATE TABLE IF NOT EXISTS "{schema}".meta (name text PRIMARY KEY, value text)'
        )
        version = schema_version(connection, schema)
        refuse_newer(version, schema)
        for statements in MIGRATIONS[version:]:
            for statement in statements:
                connection.execute(statement.replace("{s}", f'"{schema}"'))
        connection.execute(
            f"INSERT INTO \"{schema}\".meta (name, value) VALUES ('schema_version', %s) "
            "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            (str(SCHEMA_VERSION),),
        )
    return SCHEMA_VERSION
