"""Transactional enqueue on SQLite: jobs written with the caller's own sqlite3 connection.

The job exists exactly when the caller's transaction commits; a rollback
leaves nothing, not even a key held. A connection to another file, or of
another kind, is refused before anything is written.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import offload
from offload import State
from offload._brokers import SqliteBroker
from offload._brokers._base import Transactional
from offload._errors import ConfigurationError
from offload._message import Message, new_id

WAIT = 20.0


def message(**fields: Any) -> Message:
    fields.setdefault("payload", b"[]")
    return Message(new_id(), "tasks.work", (), {}, **fields)


def double(x: int) -> int:
    return 2 * x


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "jobs.db"


@pytest.fixture
def broker(db_path: Path) -> Iterator[SqliteBroker]:
    broker = SqliteBroker(db_path)
    yield broker
    broker.close()


@contextlib.contextmanager
def connect(path: Path | str, **options: Any) -> Iterator[sqlite3.Connection]:
    """The caller's own connection, closed after (``with sqlite3.connect()`` only commits)."""
    connection = sqlite3.connect(path, **options)
    try:
        yield connection
    finally:
        connection.close()


def ids_claimed(broker: SqliteBroker) -> set[str]:
    return {delivery.message.id for delivery in broker.claim(None, 100, 30)}


# -- the broker ------------------------------------------------------------------------


def test_the_sqlite_broker_is_transactional(broker: SqliteBroker) -> None:
    assert isinstance(broker, Transactional)


def test_an_enqueue_on_the_callers_connection_commits_with_it(
    broker: SqliteBroker, db_path: Path
) -> None:
    plain, keyed = message(), message(key="order:1")
    with connect(db_path) as connection:
        connection.execute("CREATE TABLE orders (id INTEGER)")
        connection.execute("INSERT INTO orders VALUES (1)")
        assert broker.enqueue_in([plain, keyed], connection) == [plain.id, keyed.id]
        assert broker.inspector.job(plain.id) is None, "not visible before the caller commits"
        connection.commit()
    assert ids_claimed(broker) == {plain.id, keyed.id}


def test_an_enqueue_on_the_callers_connection_rolls_back_with_it(
    broker: SqliteBroker, db_path: Path
) -> None:
    plain, keyed = message(), message(key="order:2")
    with connect(db_path) as connection:
        broker.enqueue_in([plain], connection)
        broker.enqueue_in([keyed], connection)
        connection.rollback()
    assert broker.inspector.job(plain.id) is None
    assert broker.inspector.job(keyed.id) is None
    assert broker.claim(None, 10, 30) == []
    again = message(key="order:2")
    assert broker.enqueue([again]) == [again.id], "the rolled-back job held no key"


def test_an_autocommit_callers_connection_commits_at_once(
    broker: SqliteBroker, db_path: Path
) -> None:
    m = message(key="k")
    with connect(db_path, isolation_level=None) as connection:
        assert broker.enqueue_in([m], connection) == [m.id]
        assert not connection.in_transaction
    job = broker.inspector.job(m.id)
    assert job is not None and job.state is State.QUEUED


def test_a_transaction_the_caller_began_commits_the_job_with_its_own_writes(
    broker: SqliteBroker, db_path: Path
) -> None:
    m = message()
    with connect(db_path, isolation_level=None) as connection:
        connection.execute("CREATE TABLE orders (id INTEGER)")
        connection.execute("BEGIN")
        connection.execute("INSERT INTO orders VALUES (7)")
        broker.enqueue_in([m], connection)
        assert connection.in_transaction, "left open: the caller commits"
        connection.execute("ROLLBACK")
        assert connection.execute("SELECT count(*) FROM orders").fetchone() == (0,)
    assert broker.inspector.job(m.id) is None


def test_keys_behave_as_in_enqueue(broker: SqliteBroker, db_path: Path) -> None:
    stored = message(key="held")
    broker.enqueue([stored])
    with connect(db_path) as connection:
        first, repeat = message(key="fresh"), message(key="fresh")
        answer = broker.enqueue_in([message(key="held"), first, repeat], connection)
        assert answer == [stored.id, first.id, first.id]
        # The caller's own uncommitted job holds its key in its transaction.
        assert broker.enqueue_in([message(key="fresh")], connection) == [first.id]
        connection.commit()
    assert ids_claimed(broker) == {stored.id, first.id}


def test_a_failed_batch_leaves_the_callers_transaction_as_it_was(
    broker: SqliteBroker, db_path: Path
) -> None:
    stored = message()
    broker.enqueue([stored])
    with connect(db_path) as connection:
        connection.execute("CREATE TABLE orders (id INTEGER)")
        connection.execute("INSERT INTO orders VALUES (1)")
        kept = message()
        broker.enqueue_in([kept], connection)
        batch = [message(), Message(stored.id, "tasks.other", (), {}, payload=b"[]")]
        with pytest.raises(ValueError, match="already exists"):
            broker.enqueue_in(batch, connection)
        assert connection.in_transaction
        connection.commit()
        assert connection.execute("SELECT count(*) FROM orders").fetchone() == (1,)
    assert ids_claimed(broker) == {stored.id, kept.id}, "none of the failed batch"


def test_what_the_caller_set_on_its_connection_does_not_matter(
    broker: SqliteBroker, db_path: Path
) -> None:
    stored = message(key="k")
    broker.enqueue([stored])
    with connect(db_path) as connection:
        connection.row_factory = lambda cursor, row: dict(zip(["x"] * len(row), row, strict=True))
        connection.text_factory = bytes
        assert broker.enqueue_in([message(key="k")], connection) == [stored.id]
        connection.commit()


def test_python_arguments_and_repeated_ids_are_refused_before_writing(
    broker: SqliteBroker, db_path: Path
) -> None:
    m = message()
    with connect(db_path) as connection:
        with pytest.raises(ValueError, match="appears twice"):
            broker.enqueue_in([m, m], connection)
        with pytest.raises(ValueError, match="encoded"):
            broker.enqueue_in([Message(new_id(), "tasks.work", (1,), {})], connection)
        assert not connection.in_transaction


def test_a_connection_to_another_file_is_refused(
    broker: SqliteBroker, db_path: Path, tmp_path: Path
) -> None:
    other = tmp_path / "other.db"
    with connect(other) as connection:
        with pytest.raises(ConfigurationError) as refused:
            broker.enqueue_in([message()], connection)
        assert str(other) in str(refused.value)
        assert f"sqlite3.connect({str(db_path)!r})" in str(refused.value)
        assert not connection.in_transaction
    with connect(":memory:") as connection, pytest.raises(ConfigurationError, match="memory"):
        broker.enqueue_in([message()], connection)


def test_something_else_than_a_sqlite3_connection_is_refused(broker: SqliteBroker) -> None:
    with pytest.raises(ConfigurationError, match=r"takes a sqlite3\.Connection to .*jobs\.db"):
        broker.enqueue_in([message()], object())


def test_another_name_for_the_same_file_is_accepted(
    broker: SqliteBroker, db_path: Path, tmp_path: Path
) -> None:
    link = tmp_path / "link.db"
    link.symlink_to(db_path)
    m = message()
    with connect(link) as connection:
        broker.enqueue_in([m], connection)
        connection.commit()
    assert ids_claimed(broker) == {m.id}


def test_a_committed_transactional_enqueue_wakes_a_waiter(
    broker: SqliteBroker, db_path: Path
) -> None:
    woke = threading.Event()
    with connect(db_path) as connection:
        broker.enqueue_in([message()], connection)
        waiter = threading.Thread(
            target=lambda: (broker.wait_for_messages(10), woke.set()), daemon=True
        )
        waiter.start()
        assert not woke.wait(0.3), "nothing is claimable before the commit"
        connection.commit()
    assert woke.wait(5)
    waiter.join(5)


# -- through an app --------------------------------------------------------------------


@pytest.fixture
def app(db_path: Path) -> Iterator[offload.App]:
    app = offload.App(f"sqlite:///{db_path}", name="sqlite-tx", include=[__name__])
    yield app
    app.shutdown(wait=False)


def test_a_call_in_a_committed_transaction_runs(app: offload.App, db_path: Path) -> None:
    task = app.task(double)
    with connect(db_path) as connection:
        handle = task.options(connection=connection).delay(21)
        assert not handle.done()
        assert app.job(handle.id) is None, "not stored before the commit"
        connection.commit()
    job = app.job(handle.id)
    assert job is not None and job.state is State.QUEUED
    worker = app.worker()
    worker.start()
    try:
        assert handle.result(timeout=WAIT) == 42
    finally:
        worker.stop()


def test_a_handle_settles_when_another_process_runs_the_committed_call(
    app: offload.App, db_path: Path
) -> None:
    task = app.task(double)
    with connect(db_path) as connection:
        handle = task.options(connection=connection).delay(4)
        connection.commit()
    # Another app on the file, as a worker process would be: the producer's
    # handle hears the outcome by polling the file.
    other = offload.App(f"sqlite:///{db_path}", name="sqlite-tx-worker", include=[__name__])
    other.task(double)
    worker = other.worker()
    worker.start()
    try:
        assert handle.result(timeout=WAIT) == 8
    finally:
        worker.stop()
        other.shutdown(wait=False)


def test_a_call_in_a_rolled_back_transaction_never_existed(app: offload.App, db_path: Path) -> None:
    task = app.task(double)
    with connect(db_path) as connection:
        handle = task.options(connection=connection).delay(21)
        connection.rollback()
    assert app.job(handle.id) is None
    with pytest.raises(offload.ResultTimeout):
        handle.result(timeout=0.3)  # not "not found": it may still be committed, for all we know


def test_a_connection_to_another_file_is_refused_by_the_call(
    app: offload.App, tmp_path: Path
) -> None:
    refused = pytest.raises(offload.ConfigurationError, match=r"elsewhere\.db")
    with connect(tmp_path / "elsewhere.db") as connection, refused:
        app.task(double).options(connection=connection).delay(1)
