"""PostgreSQL: one corrupt job never stalls or loses another (issue 9).

Each case enqueues good jobs and one more through a real app, damages that
one's row with SQL (as anything that reaches the database could), runs a
real worker, and checks through the broker's inspection: every good job
succeeded, the bad one failed with a reason naming what is wrong, the
worker still runs, and every job is accounted for. Property tests feed the
row readers arbitrary values: a row never makes them raise.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import offload
from offload import BrokerUnavailable, ConfigurationError, State
from offload._brokers._postgres import PostgresBroker
from offload._brokers._postgres.link import Secrets
from offload._brokers._postgres.values import row_delivery
from offload._brokers._sql_rows import INFO_COLUMNS, MESSAGE_COLUMNS, row_info
from offload._message import (
    DEFAULT_MAX_DELIVERIES,
    MAX_NAME,
    Delivery,
    ErrorInfo,
    JobInfo,
    Message,
    Outcome,
    message_problem,
    new_id,
)
from offload.testing import FakeClock
from servers import drop_postgres_schema, require_postgres

GOOD = 5  # good jobs beside the bad one


def double(x: int) -> int:
    return 2 * x


@pytest.fixture
def namespace() -> Iterator[str]:
    require_postgres()
    name = f"t_{uuid.uuid4().hex}"
    yield name
    drop_postgres_schema(f"offload_{name}")


@pytest.fixture
def make_app(namespace: str) -> Iterator[Callable[[], offload.App]]:
    """Apps on the test's namespace, shut down after it."""
    made: list[offload.App] = []

    def make() -> offload.App:
        app = offload.App(require_postgres(), namespace=namespace, name=f"poison{len(made)}")
        made.append(app)
        return app

    yield make
    for app in made:
        app.shutdown(wait=False)


def sql(namespace: str, statement: str, *params: Any) -> list[Any]:
    """``statement`` on the namespace's table ("{jobs}"), as another client would run it."""
    with psycopg.connect(require_postgres(), autocommit=True) as connection:
        cursor = connection.execute(
            statement.replace("{jobs}", f'"offload_{namespace}".jobs'), params
        )
        return cursor.fetchall() if cursor.description else []


def wait_finished(app: offload.App, ids: list[str], timeout: float = 4.0) -> dict[str, State]:
    deadline = time.monotonic() + timeout
    while True:
        states = app.broker.inspector.job_states(ids)  # type: ignore[attr-defined]
        if all(state.finished for state in states.values()) or time.monotonic() > deadline:
            return dict(states)
        time.sleep(0.01)


# The workers stop with wait=False once their jobs are done: the thread pool's
# shutdown(wait=True) can miss an idle thread and wait 5 s for it (a race in
# ThreadExecutor._work, outside this test's subject).


def dispatcher_alive(app: offload.App) -> bool:
    return any(
        thread.name == f"{app.name}-dispatcher" and thread.is_alive()
        for thread in threading.enumerate()
    )


# Each: the columns set on the bad job's row, and what its error must name.
CASES = {
    "attempt at the int4 limit": ("attempt = 2147483647", "attempt=1000001 is out of range"),
    "meta not JSON": ("meta = '{not json'", "JSONDecodeError"),
    "meta not a map": ("meta = '[1, 2]'", "meta must be a map"),
    "meta of numbers": ("meta = '{\"a\": 1}'", "meta must be a map"),
    "eta NaN": ("eta = 'NaN'", "eta=nan is out of range"),
    "eta and due NaN": ("eta = 'NaN', due = 'NaN'", "eta=nan is out of range"),
    "eta and due infinite": ("eta = 'Infinity', due = 'Infinity'", "eta=inf is out of range"),
    "result_ttl NaN": ("result_ttl = 'NaN'", "result_ttl=nan"),
    "result_ttl negative": ("result_ttl = -1", "result_ttl=-1.0"),
    "timeout infinite": ("timeout = 'Infinity'", "timeout=inf"),
    "timeout negative": ("timeout = -5", "timeout=-5.0"),
    "priority absurd": ("priority = 2000000000", "priority=2000000000"),
    "max_deliveries zero": ("max_deliveries = 0", "max_deliveries=0"),
    "retries negative": ("retries = -1", "retries=-1"),
    "created NaN": ("created = 'NaN'", "created=nan"),
    "task empty": ("task = ''", "the task name must not be empty"),
    "task too long": ("task = repeat('x', 5000)", "the task name is 5000 bytes long"),
    "payload garbage": ("payload = '\\xff00'::bytea", "cannot be decoded"),
    # A lapsed lease with max_deliveries unset: DEFAULT_MAX_DELIVERIES, not forever.
    "lapsed, no max_deliveries": (
        f"state = 'running', due = 0, attempt = {DEFAULT_MAX_DELIVERIES}, max_deliveries = NULL",
        f"delivered {DEFAULT_MAX_DELIVERIES} times",
    ),
    "lapsed at the int4 limit": (
        "state = 'running', due = 0, attempt = 2147483647",
        "delivered 2147483647 times",
    ),
}


@pytest.mark.timeout(20)
@pytest.mark.parametrize("case", list(CASES))
def test_a_corrupt_job_fails_alone_and_the_worker_runs_on(
    case: str,
    make_app: Callable[[], offload.App],
    namespace: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    assignments, reason = CASES[case]
    app = make_app()
    task = app.task(double)
    ids = [task(i).id for i in range(GOOD + 1)]
    bad, good = ids[GOOD // 2], ids[: GOOD // 2] + ids[GOOD // 2 + 1 :]
    sql(namespace, "UPDATE {jobs} SET " + assignments + " WHERE id = %s", bad)

    worker = app.worker(concurrency=4)
    with caplog.at_level(logging.WARNING, logger="offload"):
        worker.start()
        try:
            states = wait_finished(app, ids)
            assert dispatcher_alive(app), "the worker still claims"
            later = task(100).id  # and still runs what comes next
            assert wait_finished(app, [later]) == {later: State.SUCCEEDED}
        finally:
            worker.stop(wait=False)  # all done (see above dispatcher_alive)

    assert states == {**dict.fromkeys(good, State.SUCCEEDED), bad: State.FAILED}
    results = {job_id: app.handle(job_id).result(timeout=3) for job_id in good}
    assert sorted(results.values()) == [2 * i for i in range(GOOD + 1) if i != GOOD // 2]
    job = app.job(bad)
    assert job is not None and job.error is not None
    assert reason in job.error.message, job.error.message
    counts = app.broker.inspector.counts()  # type: ignore[attr-defined]
    assert sum(sum(by_state.values()) for by_state in counts.values()) == GOOD + 2, "none lost"
    assert not [r for r in caplog.records if "claiming" in r.getMessage()], "no claim failed"


@pytest.mark.timeout(20)
def test_a_corrupt_result_or_error_record_fails_its_handle_alone(
    make_app: Callable[[], offload.App], namespace: str
) -> None:
    """Issue 9, section 4: on PostgreSQL the other handles of the producer settle."""
    app = make_app()
    task = app.task(double)
    ids = [task(i).id for i in range(11)]
    worker = app.worker(concurrency=4)
    worker.start()
    try:
        assert set(wait_finished(app, ids).values()) == {State.SUCCEEDED}
    finally:
        worker.stop(wait=False)
    sql(namespace, "UPDATE {jobs} SET result = '\\xfffe'::bytea WHERE id = %s", ids[0])
    sql(
        namespace,
        "UPDATE {jobs} SET state = 'failed', result = NULL, error_type = '..x', "
        "error_message = NULL, error_traceback = NULL, error_args = '{bad' WHERE id = %s",
        ids[1],
    )
    producer = make_app()  # handles of another process: settled from the records
    handles = [producer.handle(job_id) for job_id in ids]
    with pytest.raises(offload.OffloadError):
        handles[0].result(timeout=3)
    with pytest.raises(offload.OffloadError):
        handles[1].result(timeout=3)
    assert [handle.result(timeout=3) for handle in handles[2:]] == [2 * i for i in range(2, 11)]


# -- the broker alone (a fake clock) ---------------------------------------------------


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def broker(namespace: str, clock: FakeClock) -> Iterator[PostgresBroker]:
    broker = PostgresBroker(require_postgres(), namespace=namespace, clock=clock)
    yield broker
    broker.close()


def message(**fields: Any) -> Message:
    fields.setdefault("payload", b"[]")
    return Message(new_id(), "tasks.work", (), {}, **fields)


def test_a_claim_reads_each_row_alone(broker: PostgresBroker, namespace: str) -> None:
    jobs = [message() for _ in range(6)]
    broker.enqueue(jobs)
    sql(namespace, "UPDATE {jobs} SET attempt = 2147483647 WHERE id = %s", jobs[1].id)
    sql(namespace, "UPDATE {jobs} SET meta = 'nope' WHERE id = %s", jobs[3].id)
    sql(namespace, "UPDATE {jobs} SET eta = 'NaN' WHERE id = %s", jobs[4].id)
    deliveries = {d.message.id: d for d in broker.claim(None, 10, 30)}
    assert set(deliveries) == {job.id for job in jobs}
    defects = {job_id: d.defect for job_id, d in deliveries.items() if d.defect is not None}
    assert set(defects) == {jobs[1].id, jobs[3].id, jobs[4].id}
    assert "attempt" in (defects[jobs[1].id] or "")
    assert "could not be decoded" in (defects[jobs[3].id] or "")
    assert "eta" in (defects[jobs[4].id] or "")


def test_a_job_due_at_no_time_becomes_claimable(broker: PostgresBroker, namespace: str) -> None:
    jobs = [message(), message()]
    broker.enqueue(jobs)
    sql(namespace, "UPDATE {jobs} SET due = 'NaN' WHERE id = %s", jobs[0].id)
    sql(namespace, "UPDATE {jobs} SET due = 'Infinity', eta = 'NaN' WHERE id = %s", jobs[1].id)
    deliveries = {d.message.id: d for d in broker.claim(None, 10, 30)}
    assert deliveries[jobs[0].id].defect is None, "only the time to start was damaged: it runs"
    assert "eta=nan" in (deliveries[jobs[1].id].defect or "")


def test_a_refused_ack_fails_alone_and_its_job_is_recorded_failed(
    broker: PostgresBroker,
) -> None:
    jobs = [message() for _ in range(4)]
    broker.enqueue(jobs)
    deliveries = broker.claim(None, 4, 30)
    acks = [
        (d.message.id, d.token, "succeeded", 1.0, 2.0, b"ok", *[None] * 4, False)
        for d in deliveries
    ]
    acks[1] = (*acks[1][:6], "E", "a NUL\x00 the driver refuses", "", None, False)
    answers = broker._store_acks(acks)
    assert answers[0] is True and answers[2] is True and answers[3] is True
    assert isinstance(answers[1], offload.OffloadError), answers[1]
    states = broker.inspector.job_states([d.message.id for d in deliveries])
    assert list(states.values()).count(State.SUCCEEDED) == 3
    refused = broker.inspector.job(deliveries[1].message.id)
    assert refused is not None and refused.state is State.FAILED and refused.error is not None
    assert "could not be stored" in refused.error.message


def test_acks_of_threads_that_meet_fail_one_by_one(broker: PostgresBroker) -> None:
    jobs = [message() for _ in range(8)]
    broker.enqueue(jobs)
    deliveries = broker.claim(None, 8, 30)
    barrier = threading.Barrier(len(deliveries))
    answers: dict[str, object] = {}

    def ack(index: int, delivery: Delivery) -> None:
        payload: Any = object() if index == 0 else b"[1]"  # psycopg cannot store it
        barrier.wait()
        try:
            answers[delivery.message.id] = broker.ack(
                delivery, Outcome(State.SUCCEEDED, payload=payload)
            )
        except Exception as error:
            answers[delivery.message.id] = error

    threads = [threading.Thread(target=ack, args=item) for item in enumerate(deliveries)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    first, *others = [answers[d.message.id] for d in deliveries]
    assert isinstance(first, offload.OffloadError) and others == [True] * 7


def test_error_texts_and_args_are_stored_and_read_back(broker: PostgresBroker) -> None:
    jobs = [message(), message()]
    broker.enqueue(jobs)
    first, second = broker.claim(None, 2, 30)
    weird = ErrorInfo("x.Boom", "NUL\x00 and \udcff", "tb\x00", '["missing"]')
    assert broker.ack(first, Outcome(State.FAILED, error_info=weird))
    assert broker.nack(second, None, error=ErrorInfo("x.E", "m", "t", "[1]"))
    stored = broker.inspector.job(first.message.id)
    assert stored is not None and stored.error is not None
    assert stored.error == ErrorInfo("x.Boom", "NUL\\x00 and \\udcff", "tb\\x00", '["missing"]')
    retrying = broker.inspector.job(second.message.id)
    assert retrying is not None and retrying.error == ErrorInfo("x.E", "m", "t", "[1]")


# -- inspection never raises on a row --------------------------------------------------


def test_inspection_of_ids_and_queues_postgresql_cannot_hold(broker: PostgresBroker) -> None:
    job = message()
    broker.enqueue([job])
    assert broker.inspector.job("a\x00b") is None
    assert broker.inspector.job("\udcff") is None
    assert broker.inspector.job_states([job.id, "a\x00b", "\udcff"]) == {job.id: State.QUEUED}
    assert broker.inspector.jobs(queue="a\x00b") == []
    assert not broker.inspector.cancel("a\x00b") and not broker.inspector.retry("a\x00b")
    assert broker.inspector.purge(State.FAILED, queue="\x00") == 0


# -- what PostgreSQL refuses is refused with offload's error ----------------------------


def noise(length: int, first: int, span: int) -> str:
    chooser = random.Random(length)
    return "".join(chr(first + chooser.randrange(span)) for _ in range(length))


REFUSED = {
    "NUL in the queue": ({"queue": "a\x00b"}, "queue 'a\\x00b' contains a NUL"),
    "NUL in the key": ({"key": "k\x00"}, "key 'k\\x00' contains a NUL"),
    "a lone surrogate in the key": ({"key": "k\udcff"}, "not valid Unicode"),
    # Random text: PostgreSQL compresses a repetitive one below its index limit.
    "a queue name too long": ({"queue": noise(5000, 0x61, 26)}, "over the limit of 200"),
    "a key PostgreSQL cannot index": (
        {"key": noise(1000, 0x1F300, 0x300)},
        "over the limit of 1000",
    ),
    "priority out of int4": ({"priority": 2**40}, "priority="),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_a_message_postgresql_refuses_raises_offloads_error(
    broker: PostgresBroker, case: str
) -> None:
    fields, reason = REFUSED[case]
    good, bad = message(), message(**fields)
    with pytest.raises(ConfigurationError) as raised:
        broker.enqueue([good, bad])
    assert reason in str(raised.value) and bad.id in str(raised.value)
    assert broker.inspector.job(good.id) is None, "all or none"


def test_a_nul_task_name_is_refused_with_offloads_error(broker: PostgresBroker) -> None:
    bad = Message(new_id(), "tasks.\x00work", (), {}, payload=b"[]")
    with pytest.raises(ConfigurationError, match="the task name"):
        broker.enqueue([bad])
    connection = psycopg.connect(require_postgres())
    try:
        with pytest.raises(ConfigurationError, match="the task name"):
            broker.enqueue_in([bad], connection)
    finally:
        connection.close()


def test_a_claim_of_a_queue_name_postgresql_cannot_hold_is_refused(
    broker: PostgresBroker,
) -> None:
    with pytest.raises(ConfigurationError, match="NUL"):
        broker.claim(["default", "a\x00b"], 1, 30)
    assert broker.claim(["default"], 1, 30) == []


# -- passwords -------------------------------------------------------------------------

SECRET = "hunter2hunter2"


@pytest.mark.parametrize(
    "url",
    [
        f"host=127.0.0.1 port=1 password=se {SECRET}",  # libpq quotes the piece it trips on
        f"postgresql://u:{SECRET}%zz@127.0.0.1:1/test",  # a bad percent escape, quoted
        f"host=127.0.0.1 password='{SECRET}",  # an unterminated quote
    ],
)
def test_an_unreadable_connection_string_never_shows_its_password(url: str) -> None:
    with pytest.raises(ConfigurationError) as raised:
        PostgresBroker(url)
    assert SECRET not in str(raised.value) and "hunter" not in str(raised.value)


@pytest.mark.timeout(20)
@pytest.mark.parametrize(
    "url",
    [
        f"postgresql://u:{SECRET}@127.0.0.1:1/test",
        f"postgresql://u@127.0.0.1:1/test?password={SECRET}",
        f"host=127.0.0.1 port=1 dbname=test password={SECRET}",
    ],
)
def test_an_unreachable_server_never_shows_the_password(
    url: str, caplog: pytest.LogCaptureFixture
) -> None:
    import traceback

    broker = PostgresBroker(url, retry_for=0.2, connect_timeout=1)
    try:
        assert SECRET not in repr(broker)
        with caplog.at_level(logging.DEBUG, logger="offload"):
            with pytest.raises(BrokerUnavailable) as raised:
                broker.enqueue([message()])
            broker.wait_for_messages(0.05)
        shown = "".join(traceback.format_exception(raised.value))
        assert "cannot reach" in shown and SECRET not in shown
        assert caplog.records and not [r for r in caplog.records if SECRET in r.getMessage()]
    finally:
        broker.close()


def test_scrub_hides_the_password_and_unparsed_pieces_of_it() -> None:
    secrets = Secrets(f"postgresql://u:{SECRET}@h/db?sslpassword=other-secret&x=1")
    assert secrets.scrub(f"bad {SECRET}, other-secret") == "bad ***, ***"
    assert secrets.scrub('host "h" port "5432"') == 'host "h" port "5432"'
    unparsed = Secrets(f"host=h dbname=app password=se {SECRET} port=5")
    assert unparsed.scrub_unparsed(f'missing "=" after "{SECRET}"') == 'missing "***" after "***"'
    assert Secrets("postgresql://u@h/db").scrub('nothing "to" hide') == 'nothing "to" hide'
    assert SECRET not in repr(Secrets(f"password={SECRET}"))


# -- property tests of the row readers ---------------------------------------------------

ANY_VALUE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**31), max_value=2**31 - 1),
    st.floats(),
    st.text(max_size=30),
    st.binary(max_size=30),
    st.sampled_from(['{"a": "b"}', "{", "[1]", '{"a": 1}', "null", "1e999", '"x"']),
    st.sampled_from([s.value for s in State] + ["unknown"]),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.text(max_size=3), max_size=2),
)
MESSAGE_WIDTH = len(MESSAGE_COLUMNS.split(", "))
INFO_WIDTH = len(INFO_COLUMNS.split(", "))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(columns=st.lists(ANY_VALUE, min_size=MESSAGE_WIDTH, max_size=MESSAGE_WIDTH))
def test_any_claimed_row_reads_as_a_delivery(columns: list[Any]) -> None:
    row = (1, 0.0, 7, *columns)
    delivery = row_delivery(row, 30.0)
    assert isinstance(delivery, Delivery) and delivery.token == 7
    if delivery.defect is None:
        assert message_problem(delivery.message) is None
        assert delivery.message.id == columns[0] and delivery.message.task == columns[1]
    else:
        assert isinstance(delivery.defect, str) and delivery.defect


def _storable_name(text: str) -> bool:
    """What offload writes: no NUL, at most ``MAX_NAME`` bytes of UTF-8 (not characters)."""
    return "\x00" not in text and len(text.encode("utf-8")) <= MAX_NAME


GOOD_MESSAGE_COLUMNS = st.tuples(
    st.text(min_size=1, max_size=30),  # id
    st.text(min_size=1, max_size=200).filter(_storable_name),  # task
    st.text(min_size=1, max_size=200).filter(_storable_name),  # queue
    st.integers(-1_000_000, 1_000_000),  # priority
    st.none() | st.floats(0, 32503680000.0),  # eta
    st.integers(0, 1_000_000),  # attempt
    st.none() | st.integers(1, 1_000_000),  # max_deliveries
    st.none() | st.text(max_size=50).filter(lambda t: "\x00" not in t),  # key
    st.none() | st.floats(0, 1e9),  # timeout
    st.none() | st.integers(0, 1_000_000),  # retries
    st.floats(0, 32503680000.0),  # created
    st.none() | st.binary(max_size=20),  # payload
    st.none() | st.floats(0, 1e9),  # result_ttl
    st.none() | st.just('{"trace": "abc"}'),  # meta
)


@settings(max_examples=200, deadline=None)
@given(columns=GOOD_MESSAGE_COLUMNS)
def test_a_row_offload_wrote_reads_whole(columns: tuple[Any, ...]) -> None:
    delivery = row_delivery((1, 0.0, 7, *columns), 30.0)
    assert delivery.defect is None, delivery.defect
    assert delivery.message.priority == columns[3] and delivery.message.attempt == columns[5]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    columns=st.lists(ANY_VALUE, min_size=INFO_WIDTH - 1, max_size=INFO_WIDTH + 1),
)
def test_any_inspected_row_reads_as_a_job(columns: list[Any]) -> None:
    info = row_info(columns)
    assert isinstance(info, JobInfo) and isinstance(info.state, State)
    assert type(info.id) is str and type(info.task) is str and type(info.queue) is str
    assert type(info.attempt) is int
    if info.error is not None:
        assert all(type(text) is str for text in (info.error.type, info.error.message))
    if len(columns) == INFO_WIDTH and info.error is not None and columns[13] is None:
        assert "corrupt" in info.error.message  # an error only comes from the row's own


def test_a_row_offload_wrote_inspects_as_itself() -> None:
    row = (
        *("id1", "t", "q", "failed", 3, 5, 1.5, 2.5, 3.5, "k", 7, b"p", None),
        *("x.E", "m", "tb", '["a"]'),
    )
    info = row_info(row)
    assert info == JobInfo(
        "id1", "t", "q", State.FAILED, 3, 5, 1.5, 2.5, 3.5, "k", 7, b"p", None,
        ErrorInfo("x.E", "m", "tb", '["a"]'),
    )  # fmt: skip
