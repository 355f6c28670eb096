"""What the contract suite cannot see of the SQLite broker: the file, its schema, processes."""

from __future__ import annotations

import contextlib
import sqlite3
import stat
import statistics
import struct
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from offload._brokers import SqliteBroker
from offload._brokers._sqlite import schema
from offload._errors import ConfigurationError
from offload._message import (
    ErrorInfo,
    Message,
    Outcome,
    State,
    new_id,
)
from offload.testing import FakeClock


def message(**fields: Any) -> Message:
    fields.setdefault("payload", b"[]")
    return Message(new_id(), "tasks.work", (), {}, **fields)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "offload.db"


def meta_version(path: Path) -> int:
    with sqlite3.connect(path) as db:
        return int(
            db.execute("SELECT value FROM offload_meta WHERE name = 'schema_version'").fetchone()[0]
        )


def test_the_database_is_in_wal_mode(db_path: Path) -> None:
    SqliteBroker(db_path).close()
    with sqlite3.connect(db_path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_migrations_apply_once_and_reopening_keeps_the_data(db_path: Path) -> None:
    broker = SqliteBroker(db_path)
    m = message()
    broker.enqueue([m])
    broker.close()
    assert meta_version(db_path) == schema.SCHEMA_VERSION
    again = SqliteBroker(db_path)
    try:
        assert meta_version(db_path) == schema.SCHEMA_VERSION
        assert [d.message.id for d in again.claim(None, 10, 30)] == [m.id]
    finally:
        again.close()


def test_a_newer_schema_is_refused(db_path: Path) -> None:
    SqliteBroker(db_path).close()
    with sqlite3.connect(db_path) as db:
        db.execute(
            "UPDATE offload_meta SET value = ? WHERE name = 'schema_version'",
            (schema.SCHEMA_VERSION + 1,),
        )
    with pytest.raises(ConfigurationError, match=r"newer offload.*Upgrade offload"):
        SqliteBroker(db_path)
    assert meta_version(db_path) == schema.SCHEMA_VERSION + 1, "left as it was"


def test_an_old_sqlite_is_refused(db_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlite3, "sqlite_version_info", (3, 31, 1))
    with pytest.raises(ConfigurationError, match=r"SQLite 3\.35\.0 or newer"):
        SqliteBroker(db_path)


def test_python_arguments_are_refused(db_path: Path) -> None:
    broker = SqliteBroker(db_path)
    try:
        with pytest.raises(ValueError, match="encoded"):
            broker.enqueue([Message(new_id(), "tasks.work", (1, 2), {})])
    finally:
        broker.close()


def test_a_constraint_violation_mid_batch_rolls_back_the_batch(db_path: Path) -> None:
    broker = SqliteBroker(db_path)
    try:
        stored = message()
        broker.enqueue([stored])
        batch = [message(), message(key="k"), Message(stored.id, "tasks.other", (), {})]
        with pytest.raises(ValueError, match="already exists"):
            broker.enqueue(batch)
        assert broker.inspector.counts() == {"default": {State.QUEUED: 1}}
        assert broker.inspector.job(batch[0].id) is None
    finally:
        broker.close()


def test_a_lone_job_whose_id_is_stored_already_is_refused(db_path: Path) -> None:
    # A single job without a key is stored by its INSERT alone (no BEGIN):
    # the duplicate is refused the same way, and the stored job stays as it was.
    broker = SqliteBroker(db_path)
    try:
        stored = message()
        broker.enqueue([stored])
        with pytest.raises(ValueError, match="already exists"):
            broker.enqueue([Message(stored.id, "tasks.other", (), {}, payload=b"[]")])
        job = broker.inspector.job(stored.id)
        assert job is not None and job.task == stored.task
        assert broker.inspector.counts() == {"default": {State.QUEUED: 1}}
    finally:
        broker.close()


def test_expired_results_are_pruned_without_being_asked(db_path: Path) -> None:
    clock = FakeClock()
    broker = SqliteBroker(db_path, clock=clock, result_ttl=10)
    try:
        m = message()
        broker.enqueue([m])
        (delivery,) = broker.claim(None, 1, 30)
        broker.ack(delivery, Outcome(State.SUCCEEDED))
        clock.advance(SqliteBroker._PRUNE_EVERY + 1)
        broker.claim(None, 1, 30)  # prunes on the way, at most once a minute
        assert broker.inspector.job(m.id) is None
    finally:
        broker.close()


def test_threads_of_one_process_share_a_broker(db_path: Path) -> None:
    broker = SqliteBroker(db_path)
    ids = broker.enqueue([message() for _ in range(500)])
    seen: list[str] = []

    def work() -> None:
        while deliveries := broker.claim(None, 5, 30):
            for delivery in deliveries:
                seen.append(delivery.message.id)
                assert broker.ack(delivery, Outcome(State.SUCCEEDED))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    broker.close()
    assert sorted(seen) == sorted(ids)


CLAIMER = textwrap.dedent(
    """
    import sys
    from offload._brokers import SqliteBroker
    from offload._message import Outcome, State

    broker = SqliteBroker(sys.argv[1])
    print("ready", flush=True)
    sys.stdin.readline()  # both processes start claiming together
    while deliveries := broker.claim(None, 10, 30):
        for delivery in deliveries:
            assert broker.ack(delivery, Outcome(State.SUCCEEDED))
            print(delivery.message.id)
    broker.close()
    """
)


def test_two_processes_never_claim_the_same_job(db_path: Path) -> None:
    producer = SqliteBroker(db_path, result_ttl=0)
    ids = producer.enqueue([message() for _ in range(2000)])
    claimers = [
        subprocess.Popen(
            [sys.executable, "-c", CLAIMER, str(db_path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    for claimer in claimers:
        assert claimer.stdout is not None and claimer.stdout.readline() == "ready\n"
    for claimer in claimers:
        assert claimer.stdin is not None
        claimer.stdin.write("go\n")
        claimer.stdin.flush()
    outputs = [claimer.communicate(timeout=60)[0].split() for claimer in claimers]
    assert all(claimer.returncode == 0 for claimer in claimers)
    claimed = outputs[0] + outputs[1]
    assert sorted(claimed) == sorted(ids), "every job claimed exactly once"
    assert producer.inspector.counts() == {"default": {State.SUCCEEDED: 2000}}
    producer.close()


WAITER = textwrap.dedent(
    """
    import struct, sys, time
    from offload._brokers import SqliteBroker
    from offload._message import Outcome, State

    broker = SqliteBroker(sys.argv[1], result_ttl=0)
    count = int(sys.argv[2])
    print("ready", flush=True)
    while count:
        deliveries = broker.claim(None, 10, 30)
        if not deliveries:
            broker.wait_for_messages(5.0)
            continue
        now = time.monotonic()
        for delivery in deliveries:
            (sent,) = struct.unpack("d", delivery.message.payload)
            print(now - sent, flush=True)
            broker.ack(delivery, Outcome(State.SUCCEEDED))
            count -= 1
    """
)


def test_a_waiting_process_wakes_up_for_another_process_enqueue(db_path: Path) -> None:
    """A sanity bound, not a benchmark."""
    producer = SqliteBroker(db_path)
    count = 30
    waiter = subprocess.Popen(
        [sys.executable, "-c", WAITER, str(db_path), str(count)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert waiter.stdout is not None and waiter.stdout.readline() == "ready\n"
    latencies = []
    for _ in range(count):
        time.sleep(0.01)  # let the waiter go idle
        # time.monotonic is one clock for every process of the machine.
        producer.enqueue([message(payload=struct.pack("d", time.monotonic()))])
        latencies.append(float(waiter.stdout.readline()))
    waiter.wait(30)
    producer.close()
    assert statistics.median(latencies) < 1.0, latencies


def test_a_file_that_is_not_a_database_is_refused(db_path: Path) -> None:
    db_path.write_bytes(b"hello, not a database" * 100)
    with pytest.raises(ConfigurationError, match="cannot be used as an offload database"):
        SqliteBroker(db_path)


OPENER = textwrap.dedent(
    """
    import sys
    from offload._brokers import SqliteBroker

    sys.stdin.readline()
    SqliteBroker(sys.argv[1]).close()
    """
)


def test_processes_opening_a_new_file_together_migrate_it_once(db_path: Path) -> None:
    openers = [
        subprocess.Popen(
            [sys.executable, "-c", OPENER, str(db_path)], stdin=subprocess.PIPE, text=True
        )
        for _ in range(4)
    ]
    for opener in openers:
        assert opener.stdin is not None
        opener.stdin.write("go\n")
        opener.stdin.flush()
    for opener in openers:
        opener.communicate(timeout=60)
        assert opener.returncode == 0
    assert meta_version(db_path) == schema.SCHEMA_VERSION


# -- the file's mode ---------------------------------------------------------------


def test_a_new_database_and_its_wal_files_are_readable_by_their_owner_only(
    db_path: Path,
) -> None:
    broker = SqliteBroker(db_path)
    try:
        broker.enqueue([message()])  # the -wal and -shm files exist while it is open
        for path in (db_path, Path(f"{db_path}-wal"), Path(f"{db_path}-shm")):
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path.name
    finally:
        broker.close()


def test_an_existing_file_keeps_the_mode_its_owner_gave_it(db_path: Path) -> None:
    SqliteBroker(db_path).close()
    db_path.chmod(0o640)
    SqliteBroker(db_path).close()
    assert stat.S_IMODE(db_path.stat().st_mode) == 0o640


# -- upgrades, error args, max deliveries -------------------------------------------


# The schema as offload wrote it while its SQL lived in Python strings (schema
# version 2): a database made then must open as it is, and a new one must match.
SCHEMA_2 = (
    """
    CREATE TABLE jobs (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,  -- age order; never reused (fencing)
        id TEXT NOT NULL UNIQUE,
        task TEXT NOT NULL,
        queue TEXT NOT NULL,
        priority INTEGER NOT NULL DEFAULT 0,
        state TEXT NOT NULL CHECK (state IN
            ('queued', 'running', 'retrying', 'succeeded', 'failed', 'cancelled')),
        due REAL NOT NULL,  -- queued/retrying: claimable from; running: lease end
        eta REAL,
        attempt INTEGER NOT NULL DEFAULT 0,
        token INTEGER NOT NULL DEFAULT 0,
        max_deliveries INTEGER,
        key TEXT,
        timeout REAL,
        retries INTEGER,
        created REAL NOT NULL,
        payload BLOB,
        result_ttl REAL,
        meta TEXT,
        finished REAL,
        expires REAL,  -- when prune deletes it; NULL while live and for failed jobs
        result BLOB,
        error_type TEXT,
        error_message TEXT,
        error_traceback TEXT
    )
    """,
    "CREATE INDEX jobs_claim ON jobs (queue, priority DESC, due) "
    "WHERE state IN ('queued', 'retrying', 'running')",
    "CREATE INDEX jobs_lease ON jobs (due) WHERE state = 'running'",
    "CREATE INDEX jobs_key ON jobs (key) WHERE key IS NOT NULL",
    "CREATE INDEX jobs_expires ON jobs (expires) WHERE expires IS NOT NULL",
    "ALTER TABLE jobs ADD COLUMN error_args TEXT",
    "CREATE TABLE offload_meta (name TEXT PRIMARY KEY, value) WITHOUT ROWID",
    "INSERT INTO offload_meta VALUES ('schema_version', 2)",
)


def schema_of(path: Path) -> list[tuple[str, str, str | None]]:
    """What sqlite_master holds, whitespace aside: tables, indexes, their SQL."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        rows = db.execute("SELECT type, name, sql FROM sqlite_master ORDER BY name").fetchall()
    return [(kind, name, sql and " ".join(sql.split())) for kind, name, sql in rows]


def test_a_database_of_schema_2_is_migrated_to_what_a_new_one_gets(
    db_path: Path, tmp_path: Path
) -> None:
    """Version 2, as released, brought up to date: the same schema as a new database,
    its jobs kept and run (whatever migrations came after 2)."""
    with contextlib.closing(sqlite3.connect(db_path, isolation_level=None)) as db:
        db.execute("PRAGMA journal_mode = WAL")
        for statement in SCHEMA_2:
            db.execute(statement)
    assert meta_version(db_path) == 2
    broker = SqliteBroker(db_path)
    try:
        m = message(key="k")
        broker.enqueue([m])
        (delivery,) = broker.claim(None, 10, 30)
        assert delivery.message.id == m.id and delivery.defect is None
        assert broker.ack(delivery, Outcome(State.SUCCEEDED, payload=b"1"))
        assert broker.inspector.job(m.id).result == b"1"  # type: ignore[union-attr]
    finally:
        broker.close()
    assert meta_version(db_path) == schema.SCHEMA_VERSION
    fresh = tmp_path / "fresh.db"
    SqliteBroker(fresh).close()
    assert schema_of(db_path) == schema_of(fresh)


def test_a_semicolon_in_a_comment_or_a_string_does_not_end_a_statement() -> None:
    script = "-- one; two\nCREATE TABLE t (x TEXT DEFAULT 'a;b');  -- three;\nSELECT 1;\n"
    assert schema.split_script(script) == (
        "-- one; two\nCREATE TABLE t (x TEXT DEFAULT 'a;b')",
        "-- three;\nSELECT 1",
    )
    with pytest.raises(ValueError, match="without a ';'"):
        schema.split_script("SELECT 1; SELECT 2")


def test_a_database_of_schema_1_is_upgraded_and_keeps_its_jobs(db_path: Path) -> None:
    with sqlite3.connect(db_path) as db:  # what the previous offload created
        db.execute("PRAGMA journal_mode = WAL")
        for statement in schema.MIGRATIONS[0]:
            db.execute(statement)
        db.execute("CREATE TABLE offload_meta (name TEXT PRIMARY KEY, value) WITHOUT ROWID")
        db.execute("INSERT INTO offload_meta VALUES ('schema_version', 1)")
        db.execute(
            "INSERT INTO jobs (id, task, queue, state, due, created, payload) "
            "VALUES ('old', 'tasks.work', 'default', 'queued', 0, 1, x'5b5d')"
        )
    db.close()
    broker = SqliteBroker(db_path)
    try:
        assert meta_version(db_path) == schema.SCHEMA_VERSION
        (delivery,) = broker.claim(None, 10, 30)
        assert delivery.message.id == "old" and delivery.defect is None
        error = ErrorInfo("builtins.KeyError", "'missing'", "Traceback ...", '["missing"]')
        assert broker.ack(delivery, Outcome(State.FAILED, error_info=error))
        job = broker.inspector.job("old")
        assert job is not None and job.error == error
    finally:
        broker.close()


def test_the_args_of_an_error_are_stored_and_read_back(db_path: Path) -> None:
    broker = SqliteBroker(db_path)
    try:
        m = message()
        broker.enqueue([m])
        (delivery,) = broker.claim(None, 1, 30)
        retrying = ErrorInfo("builtins.ValueError", "bad", "tb", '["bad", 1]')
        assert broker.nack(delivery, 0.0, error=retrying)
        assert broker.inspector.job(m.id).error == retrying  # type: ignore[union-attr]
        (delivery,) = broker.claim(None, 1, 30)
        failed = ErrorInfo("builtins.ValueError", "worse", "tb")
        assert broker.ack(delivery, Outcome(State.FAILED, error_info=failed))
        assert broker.inspector.job(m.id).error == failed, "no args: none kept from before"  # type: ignore[union-attr]
        assert broker.inspector.retry(m.id)
        assert broker.inspector.job(m.id).error is None  # type: ignore[union-attr]
    finally:
        broker.close()


def corrupt(path: Path, job_id: str, sql: str, *params: Any) -> None:
    """Change a job's row behind the broker's back, as another program could."""
    with sqlite3.connect(path) as db:
        db.execute(f"UPDATE jobs SET {sql} WHERE id = ?", (*params, job_id))
    db.close()


def test_a_corrupt_row_is_a_defect_of_its_own_and_the_others_of_the_batch_are_whole(
    db_path: Path,
) -> None:
    broker = SqliteBroker(db_path)
    try:
        jobs = [message() for _ in range(5)]
        broker.enqueue(jobs)
        corrupt(db_path, jobs[2].id, "meta = '{not json'")
        deliveries = broker.claim(None, 10, 30)
        assert [d.message.id for d in deliveries] == [m.id for m in jobs]
        defects = {d.message.id: d.defect for d in deliveries if d.defect is not None}
        assert list(defects) == [jobs[2].id]
        assert "meta '{not json' is not JSON" in defects[jobs[2].id]
        assert all(broker.ack(d, Outcome(State.SUCCEEDED)) for d in deliveries)
    finally:
        broker.close()


def test_text_that_is_not_utf8_makes_a_defect_not_a_failed_claim(db_path: Path) -> None:
    broker = SqliteBroker(db_path)
    try:
        jobs = [message() for _ in range(3)]
        broker.enqueue(jobs)
        corrupt(db_path, jobs[0].id, "task = CAST(x'ff41' AS TEXT)")
        corrupt(db_path, jobs[1].id, "id = CAST(x'ff42' AS TEXT)")
        deliveries = broker.claim(None, 10, 30)
        assert len(deliveries) == 3
        assert [d.defect is not None for d in deliveries] == [True, True, False]
        assert "task name" in str(deliveries[0].defect)
        assert "job id" in str(deliveries[1].defect)
        assert all(broker.ack(d, Outcome(State.SUCCEEDED)) for d in deliveries)
        assert broker.inspector.counts() == {"default": {State.SUCCEEDED: 3}}
        assert len(broker.inspector.jobs()) == 3
    finally:
        broker.close()


def test_a_queue_name_that_is_not_utf8_is_still_claimed(db_path: Path) -> None:
    broker = SqliteBroker(db_path)
    try:
        bad, good = message(), message(queue="other")
        broker.enqueue([bad, good])
        corrupt(db_path, bad.id, "queue = CAST(x'ff' AS TEXT)")
        deliveries = broker.claim(None, 10, 30)
        assert sorted(d.defect is None for d in deliveries) == [False, True]
        assert all(broker.ack(d, Outcome(State.SUCCEEDED)) for d in deliveries)
    finally:
        broker.close()


def test_a_due_that_is_not_a_number_is_claimable_at_once(db_path: Path) -> None:
    broker = SqliteBroker(db_path)
    try:
        m = message()
        broker.enqueue([m])
        corrupt(db_path, m.id, "due = 'whenever'")
        assert broker._next_due(None) == 0.0
        (delivery,) = broker.claim(None, 10, 30)
        assert delivery.defect is None
    finally:
        broker.close()


def test_inspection_shows_a_corrupt_job_as_failed_and_the_others_as_they_are(
    db_path: Path,
) -> None:
    broker = SqliteBroker(db_path)
    try:
        good, bad, worse = message(), message(), message()
        broker.enqueue([good, bad, worse])
        corrupt(db_path, bad.id, "priority = 'high'")
        corrupt(db_path, worse.id, "key = CAST(x'ff' AS TEXT)")
        job = broker.inspector.job(bad.id)
        assert job is not None and job.state is State.FAILED and job.error is not None
        assert "corrupt" in job.error.message and "priority" in job.error.message
        assert "key" in broker.inspector.job(worse.id).error.message  # type: ignore[union-attr]
        assert broker.inspector.job(good.id).state is State.QUEUED  # type: ignore[union-attr]
        assert [j.state for j in broker.inspector.jobs()] == [
            State.FAILED,
            State.FAILED,
            State.QUEUED,
        ]
        ids = [good.id, bad.id, worse.id]
        assert broker.inspector.job_states(ids) == dict.fromkeys(ids, State.QUEUED)
    finally:
        broker.close()


def test_a_state_offload_does_not_know_reads_as_failed(db_path: Path) -> None:
    broker = SqliteBroker(db_path)
    try:
        m = message()
        broker.enqueue([m])
        with sqlite3.connect(db_path) as db:
            db.execute("PRAGMA ignore_check_constraints = ON")
            db.execute("UPDATE jobs SET state = 'bogus' WHERE id = ?", (m.id,))
        db.close()
        assert broker.inspector.job_states([m.id]) == {m.id: State.FAILED}
        assert broker.inspector.counts() == {"default": {State.FAILED: 1}}
        job = broker.inspector.job(m.id)
        assert job is not None and "state" in job.error.message  # type: ignore[union-attr]
        assert broker.claim(None, 10, 30) == []
    finally:
        broker.close()


def test_a_finished_job_with_a_corrupt_result_reads_as_failed(db_path: Path) -> None:
    broker = SqliteBroker(db_path)
    try:
        m = message()
        broker.enqueue([m])
        (delivery,) = broker.claim(None, 1, 30)
        assert broker.ack(delivery, Outcome(State.SUCCEEDED, payload=b"42"))
        corrupt(db_path, m.id, "result = 'not bytes'")
        job = broker.inspector.job(m.id)
        assert job is not None and job.state is State.FAILED
        assert "result" in job.error.message  # type: ignore[union-attr]
    finally:
        broker.close()
