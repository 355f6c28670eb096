"""Poison in the SQLite file: one corrupt job is dead-lettered alone, every other job runs.

Anyone who can open the file can write any value into any column (SQLite
keeps a value of any type whatever the column's declared one). Each case
writes one straight into a job's row, beside good jobs, then runs a real
worker: the good jobs succeed, the bad one fails with a reason that names
what is wrong, the worker keeps working, and every job is accounted for
through inspection. The property tests feed the row decoders (and a real
row) arbitrary values: a delivery (maybe a defect) or a job comes back,
never an exception.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import offload
from helpers import wait_until
from offload import State
from offload._brokers import SqliteBroker, _sql_rows
from offload._brokers._sqlite import statements
from offload._errors import MessageRejected
from offload._message import (
    Delivery,
    ErrorInfo,
    JobInfo,
    Message,
    Outcome,
    message_problem,
    new_id,
)

GOOD = 6
"""Good jobs enqueued beside each bad one (one claim batch: the worker runs 4 at once)."""
WAIT = 4.0


def double(x: int) -> int:
    return 2 * x


@pytest.fixture
def app(tmp_path: Path) -> Iterator[offload.App]:
    instance = offload.App(f"sqlite:///{tmp_path / 'jobs.db'}", name="poison")
    try:
        yield instance
    finally:
        instance.shutdown(wait=False)


def corrupt(app: offload.App, job_id: str, assignment: str, *params: Any) -> None:
    """``UPDATE jobs SET {assignment}`` for one job, from a connection of its own."""
    path = app.broker.path  # type: ignore[attr-defined]
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        if "state" in assignment:
            db.execute("PRAGMA ignore_check_constraints = ON")
        changed = db.execute(f"UPDATE jobs SET {assignment} WHERE id = ?", (*params, job_id))
        assert changed.rowcount == 1


def states(app: offload.App, ids: list[str]) -> dict[str, State]:
    return app.broker.inspector.job_states(ids)  # type: ignore[attr-defined, no-any-return]


class Run(NamedTuple):
    states: dict[str, State]
    worker_alive: bool
    after: int
    """The result of a job enqueued once the others had settled."""


def run_worker(app: offload.App, ids: list[str], settled: Any = None) -> Run:
    """Run a worker until every job of ``ids`` finished (or ``settled(states)``)."""
    task = app.task(double)
    worker = app.worker(concurrency=4)
    worker.start()
    try:
        done = settled or (lambda found: all(state.finished for state in found.values()))
        assert wait_until(lambda: done(states(app, ids)), WAIT), states(app, ids)
        after = task(21).result(timeout=WAIT)  # the worker still claims and runs
        alive = worker._threads[0].is_alive()  # the dispatcher
    finally:
        worker.stop(wait=False)  # every call has returned (see the report on ThreadExecutor)
    return Run(states(app, ids), alive, after)


def enqueue_with_one_bad(app: offload.App) -> tuple[list[offload.Handle[int]], str]:
    task = app.task(double)
    handles = [task(i) for i in range(GOOD)]
    bad = task(100)
    handles.insert(GOOD // 2, bad)  # in the middle of the claim batch
    return handles, bad.id


def assert_the_others_succeeded(handles: list[offload.Handle[int]], bad: str) -> None:
    good = [h for h in handles if h.id != bad]
    assert [h.result(timeout=WAIT) for h in good] == [2 * i for i in range(GOOD)]


# -- one bad job beside good ones ------------------------------------------------------


DEFECTS = [
    pytest.param("meta = '{not json'", "meta '{not json' is not JSON", id="meta-not-json"),
    pytest.param("meta = '[1, 2]'", "meta must be a map", id="meta-a-list"),
    pytest.param("meta = 42", "meta must be a map", id="meta-a-number"),
    pytest.param("result_ttl = 'forever'", "result_ttl", id="result_ttl-text"),
    pytest.param("result_ttl = -1", "result_ttl", id="result_ttl-negative"),
    pytest.param("priority = 'high'", "priority", id="priority-text"),
    pytest.param("priority = 1e300", "priority", id="priority-real"),
    pytest.param("timeout = 'soon'", "timeout", id="timeout-text"),
    pytest.param("eta = 'tomorrow'", "eta", id="eta-text"),
    pytest.param("eta = x'00'", "eta", id="eta-blob"),
    pytest.param("attempt = 9223372036854775807", "attempt", id="attempt-past-int64"),
    pytest.param("attempt = 1e300", "attempt", id="attempt-real"),
    pytest.param("created = 'yesterday'", "created", id="created-text"),
    pytest.param("retries = 'lots'", "retries", id="retries-text"),
    pytest.param("max_deliveries = 'three'", "max_deliveries", id="max_deliveries-text"),
    pytest.param("max_deliveries = 0", "max_deliveries", id="max_deliveries-zero"),
    pytest.param("key = x'00ff'", "key", id="key-blob"),
    pytest.param("payload = 'not bytes'", "payload", id="payload-text"),
    pytest.param("task = ''", "task name", id="task-empty"),
    pytest.param("task = CAST(x'ff41' AS TEXT)", "task name", id="task-not-utf8"),
    pytest.param("queue = CAST(x'ff' AS TEXT)", "queue", id="queue-not-utf8"),
    pytest.param("queue = x'01'", "queue", id="queue-blob"),
]


@pytest.mark.parametrize(("assignment", "reason"), DEFECTS)
def test_a_corrupt_field_fails_its_job_alone(
    app: offload.App, assignment: str, reason: str
) -> None:
    handles, bad = enqueue_with_one_bad(app)
    corrupt(app, bad, assignment)
    ids = [h.id for h in handles]
    run = run_worker(app, ids)
    assert run.states == {i: State.FAILED if i == bad else State.SUCCEEDED for i in ids}, (
        "nothing lost, only the bad one failed"
    )
    assert_the_others_succeeded(handles, bad)
    job = app.job(bad)
    assert job is not None and job.state is State.FAILED and job.error is not None
    assert reason in job.error.message, job.error.message
    assert "cannot be run" in job.error.message
    with pytest.raises(MessageRejected, match="cannot be run"):
        next(h for h in handles if h.id == bad).result(timeout=WAIT)
    assert run.worker_alive and run.after == 42


def test_several_corrupt_jobs_in_one_batch_fail_each_alone(app: offload.App) -> None:
    task = app.task(double)
    handles = [task(i) for i in range(12)]
    bad = {handles[1].id: "meta", handles[4].id: "priority", handles[7].id: "eta"}
    corrupt(app, handles[1].id, "meta = 'oops'")
    corrupt(app, handles[4].id, "priority = 'top'")
    corrupt(app, handles[7].id, "eta = 'later'")
    run = run_worker(app, [h.id for h in handles])
    for handle in handles:
        if handle.id in bad:
            assert run.states[handle.id] is State.FAILED
            assert isinstance(handle.exception(timeout=WAIT), MessageRejected)
            assert bad[handle.id] in app.job(handle.id).error.message  # type: ignore[union-attr]
        else:
            assert run.states[handle.id] is State.SUCCEEDED
            assert handle.result(timeout=WAIT) == 2 * handles.index(handle)
    assert run.worker_alive and run.after == 42


REPAIRED = [
    pytest.param("attempt = 'many'", id="attempt-text"),  # the claim counts from there: 1
    pytest.param("due = 'whenever'", id="due-text"),  # claimable at once; the claim sets it
    pytest.param("meta = NULL, timeout = 5", id="harmless"),
]


@pytest.mark.parametrize("assignment", REPAIRED)
def test_a_value_the_claim_overwrites_does_not_stop_the_job(
    app: offload.App, assignment: str
) -> None:
    handles, bad = enqueue_with_one_bad(app)
    corrupt(app, bad, assignment)
    run = run_worker(app, [h.id for h in handles])
    assert set(run.states.values()) == {State.SUCCEEDED}
    assert next(h for h in handles if h.id == bad).result(timeout=WAIT) == 200
    assert_the_others_succeeded(handles, bad)


def test_a_job_id_that_is_not_utf8_fails_that_job_and_is_still_listed(app: offload.App) -> None:
    handles, bad = enqueue_with_one_bad(app)
    corrupt(app, bad, "id = CAST(x'ff' || ? AS TEXT)", bad)
    ids = [h.id for h in handles if h.id != bad]
    run = run_worker(
        app,
        ids,
        settled=lambda found: (
            app.broker.inspector.counts() == {"default": {State.SUCCEEDED: GOOD, State.FAILED: 1}}
        ),  # type: ignore[attr-defined]
    )
    assert run.states == dict.fromkeys(ids, State.SUCCEEDED)
    assert_the_others_succeeded(handles, bad)
    (job,) = app.broker.inspector.jobs(state=State.FAILED)  # type: ignore[attr-defined]
    assert bad in job.id and "job id" in job.error.message
    job.id.encode("utf-8")  # shown escaped: printable anywhere
    assert run.worker_alive and run.after == 42


def test_a_state_offload_does_not_know_shows_as_failed_and_is_left_alone(
    app: offload.App,
) -> None:
    handles, bad = enqueue_with_one_bad(app)
    corrupt(app, bad, "state = 'paused'")
    ids = [h.id for h in handles]
    run = run_worker(app, ids)
    assert run.states == {i: State.FAILED if i == bad else State.SUCCEEDED for i in ids}
    job = app.job(bad)
    assert job is not None and job.state is State.FAILED
    assert "corrupt" in job.error.message and "state" in job.error.message  # type: ignore[union-attr]
    assert_the_others_succeeded(handles, bad)


def test_a_result_corrupted_after_success_fails_that_handle_alone(app: offload.App) -> None:
    handles, bad = enqueue_with_one_bad(app)
    ids = [h.id for h in handles]
    run_worker(app, ids)
    corrupt(app, bad, "result = 'not bytes'")
    assert app.broker.inspector.job_states(ids) == dict.fromkeys(ids, State.SUCCEEDED)  # type: ignore[attr-defined]
    job = app.job(bad)
    assert job is not None and job.state is State.FAILED and "result" in job.error.message  # type: ignore[union-attr]
    assert [app.job(i).state for i in ids if i != bad] == [State.SUCCEEDED] * GOOD  # type: ignore[union-attr]


# -- properties: the row decoders ---------------------------------------------------------


class AsText(NamedTuple):
    """Bytes to store as TEXT: not UTF-8, as another program might write."""

    data: bytes


ANY_VALUE = st.one_of(
    st.none(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(),
    st.text(max_size=30),
    st.binary(max_size=30),
)
# What the broker reads back from text that is not UTF-8 (see connection.fetch).
ESCAPED = st.binary(min_size=1, max_size=10).map(lambda b: b.decode("utf-8", "surrogateescape"))
READ_BACK = st.one_of(ANY_VALUE, ESCAPED)


def column(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A column's value: what offload writes, most of the time, else anything."""
    return st.one_of(valid, valid, READ_BACK)


def optional(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.none(), valid)


SECONDS = st.floats(min_value=0, max_value=1e6)
MESSAGE_COLUMNS = st.tuples(
    column(st.builds(new_id)),  # id
    column(st.sampled_from(["tasks.work", "app:job"])),  # task
    column(st.sampled_from(["default", "mail"])),  # queue
    column(st.integers(-100, 100)),  # priority
    column(optional(SECONDS)),  # eta
    column(st.integers(1, 50)),  # attempt
    column(optional(st.integers(1, 20))),  # max_deliveries
    column(optional(st.text(min_size=1, max_size=20))),  # key
    column(optional(SECONDS)),  # timeout
    column(optional(st.integers(0, 10))),  # retries
    column(st.floats(min_value=1, max_value=2e9)),  # created
    column(optional(st.binary(max_size=20))),  # payload
    column(optional(SECONDS)),  # result_ttl
    column(optional(st.sampled_from(['{"trace": "abc"}', "{}"]))),  # meta
)


@settings(max_examples=300, deadline=None)
@given(token=st.integers(0, 2**62), values=MESSAGE_COLUMNS)
def test_any_claimed_row_reads_as_a_delivery_or_a_defect(
    token: int, values: tuple[Any, ...]
) -> None:
    delivery = statements.row_delivery((token & statements.SEQ_BITS, token, *values), 123.0)
    assert isinstance(delivery, Delivery)
    assert delivery.token == token and delivery.lease_until == 123.0
    if delivery.defect is None:
        assert message_problem(delivery.message) is None
        assert delivery.message.id == values[0]
    else:
        assert delivery.defect, "a reason"
        delivery.defect.encode("utf-8")  # that can be stored and shown
        assert isinstance(delivery.message, Message) and isinstance(delivery.message.id, str)
        delivery.message.id.encode("utf-8")


STATES = st.sampled_from([state.value for state in State])
INFO_COLUMNS = st.tuples(
    column(st.builds(new_id)),  # id
    column(st.just("tasks.work")),  # task
    column(st.just("default")),  # queue
    column(STATES),  # state
    column(st.integers(0, 50)),  # attempt
    column(st.integers(-100, 100)),  # priority
    column(optional(SECONDS)),  # eta
    column(SECONDS),  # created
    column(optional(SECONDS)),  # finished
    column(optional(st.text(max_size=20))),  # key
    column(optional(st.integers(1, 20))),  # max_deliveries
    column(optional(st.binary(max_size=20))),  # payload
    column(optional(st.binary(max_size=20))),  # result
    column(optional(st.just("builtins.ValueError"))),  # error_type
    column(optional(st.text(max_size=20))),  # error_message
    column(optional(st.text(max_size=20))),  # error_traceback
    column(optional(st.just('["x"]'))),  # error_args
)


@settings(max_examples=300, deadline=None)
@given(values=INFO_COLUMNS, with_args=st.booleans())
def test_any_inspected_row_reads_as_a_job(values: tuple[Any, ...], with_args: bool) -> None:
    row = values if with_args else values[:16]  # PostgreSQL's rows have no error_args
    info = _sql_rows.row_info(row)
    assert isinstance(info, JobInfo) and isinstance(info.state, State)
    texts = [info.id, info.task, info.queue, info.key]
    if info.error is not None:
        assert isinstance(info.error, ErrorInfo)
        texts += [info.error.type, info.error.message, info.error.traceback, info.error.args]
    for text in texts:
        assert text is None or isinstance(text, str)
        if text is not None:
            text.encode("utf-8")  # shown anywhere
    assert type(info.attempt) is int and type(info.priority) is int
    assert info.result is None or type(info.result) is bytes
    if info.state is State.FAILED:
        assert info.error is not None, "a failed job says why"
    assert _sql_rows.state_of(values[3]) in State


# -- property: a real row, claimed, acked and inspected ---------------------------------------

WRITABLE = [
    *("id", "task", "queue", "priority", "eta", "attempt", "max_deliveries", "key", "timeout"),
    *("retries", "created", "payload", "result_ttl", "meta", "finished", "result", "error_type"),
]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(WRITABLE), value=st.one_of(ANY_VALUE, st.builds(AsText, st.binary())))
def test_any_value_in_any_column_of_a_stored_job(name: str, value: Any) -> None:
    with broker_file() as broker:
        good, job = (Message(new_id(), "tasks.work", (), {}, payload=b"[]") for _ in range(2))
        broker.enqueue([good, job])
        write(broker, job.id, name, value)
        inspect(broker, [good.id, job.id])
        deliveries = broker.claim(None, 10, 30)
        assert len(deliveries) == 2, "both claimed, whatever the bad one holds"
        assert good.id in [d.message.id for d in deliveries if d.defect is None]
        for delivery in deliveries:
            if delivery.defect is None:
                outcome = Outcome(State.SUCCEEDED, payload=b"1")
            else:  # what the runner records for a defect
                error = MessageRejected(delivery.defect)
                outcome = Outcome(State.FAILED, error=error, error_info=ErrorInfo.of(error))
            assert broker.ack(delivery, outcome)
        listed = inspect(broker, [good.id, job.id])
        assert len(listed) in (1, 2)  # a zero result_ttl keeps nothing
        assert all(info.state.finished for info in listed)


def write(broker: SqliteBroker, job_id: str, name: str, value: Any) -> None:
    sql = "CAST(? AS TEXT)" if isinstance(value, AsText) else "?"
    data = value.data if isinstance(value, AsText) else value
    try:
        with contextlib.closing(sqlite3.connect(broker.path)) as db, db:
            db.execute(f"UPDATE jobs SET {name} = {sql} WHERE id = ?", (data, job_id))
    except sqlite3.IntegrityError:
        pass  # NOT NULL or UNIQUE: the row stays as it was


def inspect(broker: SqliteBroker, ids: list[str]) -> list[JobInfo]:
    """Every inspection call, none raising; the jobs listed."""
    listed = broker.inspector.jobs()
    for job_id in ids:
        broker.inspector.job(job_id)
    broker.inspector.job_states(ids)
    assert sum(sum(by_state.values()) for by_state in broker.inspector.counts().values()) == len(
        listed
    )
    return listed


@contextlib.contextmanager
def broker_file() -> Iterator[SqliteBroker]:
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        broker = SqliteBroker(Path(folder) / "jobs.db")
        try:
            yield broker
        finally:
            broker.close()
