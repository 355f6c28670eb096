"""Another process's write lock: the broker waits for it, up to busy_timeout_ms, then says so.

The broker tries a locked file again itself (``Database.patient``), in
short steps, instead of SQLite's busy handler; these tests hold the lock
with a second connection, as another process would.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from offload._brokers import SqliteBroker
from offload._message import Message, Outcome, State, new_id


def message() -> Message:
    return Message(new_id(), "tasks.work", (), {}, payload=b"[]")


@contextlib.contextmanager
def write_locked(path: Path) -> Iterator[sqlite3.Connection]:
    """The file's write lock, held by another connection until the block ends."""
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        other.execute("BEGIN IMMEDIATE")
        yield other
        if other.in_transaction:
            other.execute("ROLLBACK")
    finally:
        other.close()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[SqliteBroker]:
    opened = SqliteBroker(tmp_path / "offload.db", busy_timeout_ms=300)
    try:
        yield opened
    finally:
        opened.close()


def _enqueue(broker: SqliteBroker, delivered: Any) -> None:
    broker.enqueue([message()])


def _claim(broker: SqliteBroker, delivered: Any) -> None:
    broker.claim(None, 1, 30)


def _lone_ack(broker: SqliteBroker, delivered: Any) -> None:
    broker.ack(delivered, Outcome(State.SUCCEEDED))


def _nack(broker: SqliteBroker, delivered: Any) -> None:
    broker.nack(delivered, None)


def _extend(broker: SqliteBroker, delivered: Any) -> None:
    broker.extend(delivered, 30)


@pytest.mark.parametrize("write", [_enqueue, _claim, _lone_ack, _nack, _extend])
def test_a_write_fails_as_locked_once_busy_timeout_has_passed(
    broker: SqliteBroker, write: Callable[[SqliteBroker, Any], None]
) -> None:
    broker.enqueue([message(), message()])
    (delivered,) = broker.claim(None, 1, 30)
    with write_locked(Path(broker.path)):
        started = time.monotonic()
        with pytest.raises(sqlite3.OperationalError, match="database is locked"):
            write(broker, delivered)
        waited = time.monotonic() - started
    assert waited >= 0.3  # it waited for the lock, busy_timeout_ms long, before failing
    # Nothing was left half done: the lock gone, the same write goes through.
    write(broker, delivered)


def test_a_write_waits_for_the_lock_and_goes_through_when_it_frees(tmp_path: Path) -> None:
    broker = SqliteBroker(tmp_path / "offload.db", busy_timeout_ms=60_000)
    try:
        stored = message()
        with write_locked(tmp_path / "offload.db") as other:
            release = threading.Timer(0.2, lambda: other.execute("ROLLBACK"))
            release.start()
            broker.enqueue([stored])  # waits for the timer's release
            release.join()
        assert [d.message.id for d in broker.claim(None, 5, 30)] == [stored.id]
    finally:
        broker.close()


def test_reads_do_not_wait_for_another_process_write(broker: SqliteBroker) -> None:
    stored = message()
    broker.enqueue([stored])
    with write_locked(Path(broker.path)):
        # WAL: readers never wait for the writer (and busy_timeout is 0.3 s).
        assert broker.inspector.counts() == {"default": {State.QUEUED: 1}}
        job = broker.inspector.job(stored.id)
        assert job is not None
        assert job.state is State.QUEUED
