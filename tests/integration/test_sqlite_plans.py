"""The SQLite broker's statements as SQLite plans them: the indexes they must use, no
temporary b-tree built for a list of states on the write paths, no None bound."""

from __future__ import annotations

import contextlib
import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from offload._brokers._sql_rows import MESSAGE_COLUMNS
from offload._brokers._sqlite import statements
from offload._brokers._sqlite.connection import with_nulls
from offload._brokers._sqlite.schema import MIGRATIONS, QUERIES, SCHEMA_VERSION, migrate

_PER_QUEUE = QUERIES["candidates_in_queue"].format(queue="?")
_FILLED = {
    "{parts}": f"{_PER_QUEUE} UNION ALL {_PER_QUEUE}",
    "{seqs}": "?",
    "{marks}": "?, ?",
    "{queue}": "?",
}

# Each query whose speed rests on a partial index, and the index (repeated
# when it must be used more than once, e.g. once per part of a UNION).
MUST_USE = {
    "candidates_in_queue": ["jobs_claim"],
    "candidates": ["jobs_claim", "jobs_claim"],
    "candidates_in_order": ["jobs_claim", "jobs_claim"],
    "queue_names": ["jobs_claim", "jobs_claim"],
    "next_due": ["jobs_claim"],
    "next_due_in": ["jobs_claim"],
    "oldest_ready": ["jobs_claim"],
    "counts": ["jobs_claim", "jobs_lease", "jobs_settled"],
    "lapsed": ["jobs_lease"],
    "workers_release": ["jobs_lease"],
}

# The hot writes (an enqueue, a claim, an ack, a lease renewal) and the
# temporary b-trees each may build: only for RETURNING rows (a claim's, a
# lease renewal's), which SQLite buffers in one. (Until migration 11 the
# table's CHECK was an IN list: one more in each but ack_delete.)
WRITES = {
    "insert": 0,
    "claim": 1,
    "ack": 0,
    "ack_delete": 0,
    "extend": 1,
    "nack": 0,
    "nack_error": 0,
}


def _statement(name: str) -> tuple[str, tuple[None, ...]]:
    sql = QUERIES[name]
    for brace, text in _FILLED.items():
        sql = sql.replace(brace, text)
    numbered = [int(n) for n in re.findall(r"\?(\d+)", sql)]
    count = max(numbered) if numbered else sql.count("?")
    return sql, (None,) * count


@contextlib.contextmanager
def _database(path: Path, *, from_version: int) -> Iterator[sqlite3.Connection]:
    """A database at the current schema: new, or made at ``from_version`` and migrated."""
    db = sqlite3.connect(path, isolation_level=None)
    try:
        if from_version:
            db.execute(QUERIES["create_meta"])
            for statements in MIGRATIONS[:from_version]:
                for statement in statements:
                    db.execute(statement)
            db.execute(QUERIES["set_schema_version"], (from_version,))
        assert migrate(db, str(path)) == SCHEMA_VERSION
        yield db
    finally:
        db.close()


@pytest.mark.parametrize(
    "from_version", [0, 9, 10], ids=["new", "migrated-from-9", "migrated-from-10"]
)
def test_the_claim_and_count_queries_use_their_partial_indexes(
    tmp_path: Path, from_version: int
) -> None:
    with _database(tmp_path / "plans.db", from_version=from_version) as db:
        for name, indexes in MUST_USE.items():
            sql, params = _statement(name)
            plan = [row[3] for row in db.execute(f"EXPLAIN QUERY PLAN {sql}", params)]
            used = [index for line in plan for index in re.findall(r"INDEX (jobs_\w+)", line)]
            assert sorted(used) == sorted(indexes), (name, plan)
            assert not any(re.fullmatch(r"SCAN jobs", line) for line in plan), (name, plan)


@pytest.mark.parametrize(
    "from_version", [0, 9, 10], ids=["new", "migrated-from-9", "migrated-from-10"]
)
def test_the_hot_writes_build_no_temporary_btree_for_a_list_of_states(
    tmp_path: Path, from_version: int
) -> None:
    # SQLite builds one per IN list of three constants or more, each time the
    # statement runs: the partial indexes' and the stats trigger's conditions
    # are comparisons joined by OR since migration 10, the table's CHECK since 11.
    with _database(tmp_path / "writes.db", from_version=from_version) as db:
        for name, allowed in WRITES.items():
            sql, params = _statement(name)
            program = [row[1] for row in db.execute(f"EXPLAIN {sql}", params)]
            assert program.count("OpenEphemeral") == allowed, name


def test_the_common_insert_and_ack_write_their_nulls_into_the_statement(tmp_path: Path) -> None:
    # A bound None costs the sqlite3 module an adapter lookup (connection.with_nulls).
    with _database(tmp_path / "nulls.db", from_version=0) as db:
        row = ("a", "t", "q", 0, 1.0, None, 0, 10, None, None, None, 2.0, b"[]", None, None)
        assert statements._OPTIONAL(row) == statements._NO_OPTIONS
        sql, values = statements.insert_one(row)
        assert None not in values
        db.execute(sql, values)
        db.execute(QUERIES["insert"], ("b", *row[1:]))
        stored = db.execute(f"SELECT {MESSAGE_COLUMNS} FROM jobs ORDER BY seq").fetchall()
        assert stored[0][1:] == stored[1][1:], "the same row either way"
        ack = statements._ACK_NO_ERROR
        assert "?" not in ack.partition("error_type")[2].partition("WHERE")[0]
        db.execute("UPDATE jobs SET state = 'running', token = 5")
        assert db.execute(ack, ("succeeded", 3.0, 4.0, b"1", 1, 5)).rowcount == 1
        assert db.execute("SELECT state, error_type FROM jobs WHERE seq = 1").fetchone() == (
            "succeeded",
            None,
        )
    with pytest.raises(ValueError, match="2 flags for 1 marks"):
        with_nulls("SELECT ?", [True, False])
