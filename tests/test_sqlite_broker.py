"""What the contract suite cannot see of the SQLite broker: the file, its schema, processes."""

from __future__ import annotations

import sqlite3
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
from offload._brokers import _sqlite_schema as schema
from offload._errors import ConfigurationError
from offload._message import Message, Outcome, State, new_id
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
        assert broker.counts() == {"default": {State.QUEUED: 1}}
        assert broker.job(batch[0].id) is None
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
        assert broker.job(m.id) is None
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
    assert producer.counts() == {"default": {State.SUCCEEDED: 2000}}
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
