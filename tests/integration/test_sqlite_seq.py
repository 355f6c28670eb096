"""The SQLite broker never gives a seq twice: a lapsed worker's token fits no later job.

A token is a job's seq and its claims so far. Since migration 11 the table
has no AUTOINCREMENT; a floor (jobs_seq, raised by a trigger when the newest
job is deleted) keeps SQLite from handing out the seq of a deleted job again.
"""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path
from typing import Any

from offload._brokers import SqliteBroker
from offload._brokers._sqlite.schema import MIGRATIONS, QUERIES
from offload._message import Delivery, Message, Outcome, State, new_id
from offload.testing import FakeClock


def message(**fields: Any) -> Message:
    return Message(new_id(), "tasks.work", (), {}, payload=b"[]", **fields)


def seqs(path: Path) -> dict[str, int]:
    with contextlib.closing(sqlite3.connect(path)) as db:
        return dict(db.execute("SELECT id, seq FROM jobs").fetchall())


def test_a_lapsed_workers_ack_misses_the_job_inserted_after_its_own_was_deleted(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    broker = SqliteBroker(tmp_path / "offload.db", clock=clock)
    try:
        broker.enqueue([message(result_ttl=0.0)])  # its ack deletes it
        (lapsed,) = broker.claim(None, 1, 10)
        clock.advance(11)
        (current,) = broker.claim(None, 1, 10)
        assert broker.ack(current, Outcome(State.SUCCEEDED, payload=b"1"))
        assert broker.inspector.counts() == {}, "deleted: the table is empty"
        newer = message()
        broker.enqueue([newer])
        (delivery,) = broker.claim(None, 1, 10)
        assert delivery.message.id == newer.id
        # Its first claim, as the lapsed one was: only the seq tells them apart.
        assert delivery.token != lapsed.token
        assert not broker.ack(lapsed, Outcome(State.SUCCEEDED, payload=b"stale"))
        assert broker.inspector.job_states([newer.id]) == {newer.id: State.RUNNING}
        assert broker.ack(delivery, Outcome(State.SUCCEEDED, payload=b"2"))
    finally:
        broker.close()


def test_no_seq_comes_back_whichever_jobs_are_deleted_and_in_whatever_order(
    tmp_path: Path,
) -> None:
    path = tmp_path / "offload.db"
    broker = SqliteBroker(path)
    try:
        jobs = [message() for _ in range(4)]
        broker.enqueue(jobs)
        given = seqs(path)
        with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as db:
            # Below the newest first (the newest protects it), then the newest.
            db.execute("DELETE FROM jobs WHERE id = ?", (jobs[2].id,))
            db.execute("DELETE FROM jobs WHERE id = ?", (jobs[3].id,))
        broker.enqueue([later := message()])
        later_seq = seqs(path)[later.id]
        assert later_seq > max(given.values())
        with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as db:
            db.execute("DELETE FROM jobs")  # several rows in one statement
        broker.enqueue([last := message()])
        assert seqs(path)[last.id] > later_seq
    finally:
        broker.close()


def test_a_database_of_version_10_keeps_its_jobs_their_tokens_and_its_highest_seq(
    tmp_path: Path,
) -> None:
    path = tmp_path / "offload.db"
    old = [message() for _ in range(4)]
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as db:
        db.execute("PRAGMA journal_mode = WAL")
        db.execute(QUERIES["create_meta"])
        for statements in MIGRATIONS[:10]:
            for statement in statements:
                db.execute(statement)
        db.execute(QUERIES["set_schema_version"], (10,))
        insert = (  # version 10's insert: seq from AUTOINCREMENT
            "INSERT INTO jobs (id, task, queue, priority, state, due, created, payload) "
            "VALUES (?, 'tasks.work', 'default', 0, 'queued', 0, 1, x'5b5d')"
        )
        for job in old:
            db.execute(insert, (job.id,))
        # The newest deleted: AUTOINCREMENT remembers its seq, 4.
        db.execute("DELETE FROM jobs WHERE id = ?", (old[3].id,))
        db.execute(
            "UPDATE jobs SET state = 'running', token = 7 << 40 | seq, due = 1e12 WHERE id = ?",
            (old[0].id,),
        )
        db.execute("PRAGMA ignore_check_constraints = ON")
        db.execute("UPDATE jobs SET state = 'bogus' WHERE id = ?", (old[1].id,))
    broker = SqliteBroker(path)
    try:
        states = broker.inspector.job_states([job.id for job in old])
        assert states == {
            old[0].id: State.RUNNING,
            old[1].id: State.FAILED,  # a state offload does not know, kept as it was
            old[2].id: State.QUEUED,
        }
        broker.enqueue([new := message()])
        assert seqs(path)[new.id] == 5, "above the seq of the deleted job"
        # The running job's holder still acks it with the token it was given.
        (delivery,) = broker.claim(None, 1, 30)
        assert delivery.message.id == old[2].id
        held = Delivery(message(), 7 << 40 | seqs(path)[old[0].id], delivery.lease_until)
        assert broker.ack(held, Outcome(State.SUCCEEDED, payload=b"1"))
        assert broker.inspector.job_states([old[0].id]) == {old[0].id: State.SUCCEEDED}
    finally:
        broker.close()
