"""The SQLite broker's statements as SQLite plans them: the indexes they must use, and
no temporary b-tree built for a list of states on the write paths."""

from __future__ import annotations

import contextlib
import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

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
