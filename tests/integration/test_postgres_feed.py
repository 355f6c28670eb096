"""The PostgreSQL broker's result feed: acks NOTIFY the producer that waits, and only it.

A producer's broker object LISTENs on a reply channel of its own while it
waits for results; its enqueues record the channel, and the acks of those
jobs (in any process, on any connection) send the outcome there. Against
the server of ``OFFLOAD_TEST_POSTGRES_URL`` (default: the local one), in a
namespace of each test's own; skipped when it is down, failing under ``CI``.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from offload._brokers._base import Finished, ResultFeed
from offload._brokers._postgres import PostgresBroker
from offload._brokers._postgres.feed import finished
from offload._brokers._postgres.queries import fill
from offload._brokers._postgres.schema import MIGRATIONS, SCHEMA_VERSION
from offload._handle import Handle
from offload._message import ErrorInfo, Message, Outcome, State, new_id
from offload._results import Interruptible, ResultWatcher
from offload._serializers import JsonSerializer
from servers import drop_postgres_schema, require_postgres

SERIALIZER = JsonSerializer()


@pytest.fixture(scope="module")
def server() -> str:
    return require_postgres()


@pytest.fixture
def namespace(server: str) -> Iterator[str]:
    name = f"t_{uuid.uuid4().hex}"
    yield name
    drop_postgres_schema(f"offload_{name}")


@pytest.fixture
def make_broker(server: str, namespace: str) -> Iterator[Callable[..., PostgresBroker]]:
    made: list[PostgresBroker] = []

    def make(**options: Any) -> PostgresBroker:
        options.setdefault("namespace", namespace)
        broker = PostgresBroker(options.pop("url", server), **options)
        made.append(broker)
        return broker

    yield make
    for broker in made:
        broker.close()


@pytest.fixture
def producer(make_broker: Callable[..., PostgresBroker]) -> PostgresBroker:
    return make_broker()


@pytest.fixture
def worker(make_broker: Callable[..., PostgresBroker]) -> PostgresBroker:
    """Another broker object: its own connections, another session of the server."""
    return make_broker()


def enqueue(broker: PostgresBroker, **fields: Any) -> Message:
    fields.setdefault("payload", b"[[],{}]")
    message = Message(new_id(), "tasks.work", (), {}, created=time.time(), **fields)
    broker.enqueue([message])
    return message


def finish(worker: PostgresBroker, value: Any) -> None:
    (delivery,) = worker.claim(None, 1, 30)
    assert worker.ack(delivery, Outcome(State.SUCCEEDED, payload=SERIALIZER.encode(value)))


def fail(worker: PostgresBroker, error: BaseException) -> None:
    (delivery,) = worker.claim(None, 1, 30)
    assert worker.ack(delivery, Outcome(State.FAILED, error=error))


def hear(broker: PostgresBroker, count: int, within: float = 5.0) -> list[Finished]:
    news: list[Finished] = []
    deadline = time.monotonic() + within
    while len(news) < count and time.monotonic() < deadline:
        news += broker.wait_for_results(0.5)
    return news


def test_the_broker_is_a_result_feed(producer: PostgresBroker) -> None:
    assert isinstance(producer, ResultFeed)


def test_the_news_of_a_job_carries_its_outcome(
    producer: PostgresBroker, worker: PostgresBroker
) -> None:
    assert producer.wait_for_results(0.0) == []  # listening: the enqueues below ask for news
    done, failed = enqueue(producer), enqueue(producer)
    finish(worker, {"total": 3})
    fail(worker, KeyError("no such user"))
    by_id = {item.id: item for item in hear(producer, 2)}
    assert by_id[done.id] == Finished(done.id, State.SUCCEEDED, SERIALIZER.encode({"total": 3}))
    news = by_id[failed.id]
    assert (news.state, news.result) == (State.FAILED, None)
    assert news.error is not None and news.error.type == "builtins.KeyError"
    assert news.error.message == "'no such user'" and "KeyError" in news.error.traceback
    stored = worker.inspector.job(failed.id)
    assert stored is not None and news.error == stored.error, "the news is the record"


def test_acks_stored_together_and_deleted_jobs_send_their_news(
    producer: PostgresBroker, worker: PostgresBroker
) -> None:
    producer.wait_for_results(0.0)
    kept, dropped = enqueue(producer), enqueue(producer, result_ttl=0)
    first, second = worker.claim(None, 2, 30)
    acks = [  # one ack_many statement: one updated, one deleted (a zero result TTL)
        (first.message.id, first.token, "succeeded", 1.0, 2.0, b'"kept"', *[None] * 4, False),
        (second.message.id, second.token, "succeeded", 1.0, 1.0, b'"gone"', *[None] * 4, True),
    ]
    assert worker._store_acks(acks) == [True, True]
    by_id = {item.id: item for item in hear(producer, 2)}
    assert by_id[kept.id] == Finished(kept.id, State.SUCCEEDED, b'"kept"')
    assert by_id[dropped.id] == Finished(dropped.id, State.SUCCEEDED, b'"gone"')
    alone = enqueue(producer, result_ttl=0)  # one ack_delete statement
    finish(worker, [1, 2])
    assert hear(producer, 1) == [Finished(alone.id, State.SUCCEEDED, SERIALIZER.encode([1, 2]))]


@pytest.mark.parametrize("size", [3, 100])  # one INSERT of arrays; COPY
def test_every_job_of_a_batch_records_the_channel(
    producer: PostgresBroker, worker: PostgresBroker, size: int
) -> None:
    producer.wait_for_results(0.0)
    batch = [
        Message(new_id(), "tasks.work", (), {}, created=time.time(), payload=b"[[],{}]")
        for _ in range(size)
    ]
    producer.enqueue(batch)
    for delivery in worker.claim(None, size, 30):
        assert worker.ack(delivery, Outcome(State.SUCCEEDED, payload=b"1"))
    news = hear(producer, size)
    assert sorted(item.id for item in news) == sorted(m.id for m in batch)
    assert {(item.state, item.result) for item in news} == {(State.SUCCEEDED, b"1")}


def test_a_job_enqueued_in_the_callers_transaction_records_the_channel(
    producer: PostgresBroker, worker: PostgresBroker, server: str
) -> None:
    producer.wait_for_results(0.0)
    job = Message(new_id(), "tasks.work", (), {}, created=time.time(), payload=b"[[],{}]")
    with psycopg.connect(server) as connection:  # committed when the block ends
        producer.enqueue_in([job], connection)
    finish(worker, "in a transaction")
    assert hear(producer, 1) == [
        Finished(job.id, State.SUCCEEDED, SERIALIZER.encode("in a transaction"))
    ]


def listener(server: str, channel: str) -> psycopg.Connection[Any]:
    connection = psycopg.connect(server, autocommit=True)
    connection.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
    return connection


def test_nothing_is_sent_for_jobs_nobody_waits_for(
    producer: PostgresBroker, worker: PostgresBroker, server: str
) -> None:
    channel = producer._feed.channel
    with listener(server, channel) as outsider:
        quiet = enqueue(producer)
        producer.wait_for_results(0.0)
        heard = enqueue(producer)
        producer.stop_listening()
        quiet_again = enqueue(producer)
        for _ in range(3):
            finish(worker, "done")
        time.sleep(0.2)  # room for any notification to arrive
        payloads = [n.payload for n in outsider.notifies(timeout=0.5)]
        assert [finished(payload) for payload in payloads] == [
            Finished(heard.id, State.SUCCEEDED, b'"done"')
        ]
        ids = [quiet.id, heard.id, quiet_again.id]
        rows = outsider.execute(
            f'SELECT id, reply_to FROM "{producer.schema}".jobs WHERE id = ANY(%s)', (ids,)
        ).fetchall()
    assert dict(rows) == {quiet.id: None, heard.id: channel, quiet_again.id: None}


def test_a_job_retried_by_hand_no_longer_names_its_producer(
    producer: PostgresBroker, worker: PostgresBroker, server: str
) -> None:
    producer.wait_for_results(0.0)
    job = enqueue(producer)
    fail(worker, KeyError("k"))
    assert hear(producer, 1)[0].state is State.FAILED
    assert producer.inspector.retry(job.id)
    with psycopg.connect(server, autocommit=True) as connection:
        row = connection.execute(
            f'SELECT reply_to FROM "{producer.schema}".jobs WHERE id = %s', (job.id,)
        ).fetchone()
    assert row == (None,), "its producer heard of its end: nobody waits for the new run"


def test_a_result_too_big_for_a_notification_comes_as_its_id_only(
    producer: PostgresBroker, worker: PostgresBroker
) -> None:
    producer.wait_for_results(0.0)
    small, big = enqueue(producer), enqueue(producer)
    finish(worker, "x" * 5000)  # 6.7 kB in base64: it fits
    finish(worker, "x" * 6000)  # 8 kB in base64: it does not
    by_id = {item.id: item for item in hear(producer, 2)}
    assert by_id[small.id] == Finished(small.id, State.SUCCEEDED, SERIALIZER.encode("x" * 5000))
    assert by_id[big.id] == Finished(big.id)
    failed = enqueue(producer)
    fail(worker, ValueError("y" * 9000))  # its message alone is over the limit
    assert hear(producer, 1) == [Finished(failed.id)]


def test_a_reply_channel_that_names_no_channel_never_fails_an_ack(
    producer: PostgresBroker, worker: PostgresBroker, server: str
) -> None:
    jobs = [enqueue(producer) for _ in range(3)]
    with psycopg.connect(server, autocommit=True) as connection:  # written by someone else
        for job, reply_to in zip(jobs, ["", "x" * 64, "é" * 32], strict=True):
            connection.execute(
                f'UPDATE "{producer.schema}".jobs SET reply_to = %s WHERE id = %s',
                (reply_to, job.id),
            )
    finish(worker, "alone")  # one ack statement
    first, second = worker.claim(None, 2, 30)
    acks = [  # one ack_many statement
        (d.message.id, d.token, "succeeded", 1.0, 2.0, b"1", *[None] * 4, False)
        for d in (first, second)
    ]
    assert worker._store_acks(acks) == [True, True]
    assert producer.inspector.counts() == {"default": {State.SUCCEEDED: 3}}


@pytest.mark.parametrize(
    ("payload", "news"),
    [
        ('["j1"]', Finished("j1")),
        ('["j1", "succeeded", "eyJhIjogMX0=", null, null, null, null]',
         Finished("j1", State.SUCCEEDED, b'{"a": 1}')),
        ('["j1", "failed", null, "x.E", "m", "tb", "[1]"]',
         Finished("j1", State.FAILED, None, ErrorInfo("x.E", "m", "tb", "[1]"))),
        ('["j1", "failed", null, null, null, null, null]', Finished("j1")),  # its record says why
        ('["j1", "running", null, null, null, null, null]', Finished("j1")),
        ('["j1", "succeeded", "not base64!", null, null, null, null]', Finished("j1")),
        ('["j1", "succeeded", 7, null, null, null, null]', Finished("j1")),
        ('["j1", "failed", null, 1, null, null, null]', Finished("j1")),
        ('["j1", "succeeded"]', Finished("j1")),
        ("[]", None),
        ('[""]', None),
        ("[7]", None),
        ('{"id": "j1"}', None),
        ("j1", None),
        ("", None),
    ],
)  # fmt: skip
def test_news_that_does_not_read_whole_names_only_its_job_or_nothing(
    payload: str, news: Finished | None
) -> None:
    assert finished(payload) == news  # anyone who reaches the database can notify


# -- a producer's handles --------------------------------------------------------------

WORKER = """
    import sys
    from offload._brokers._postgres import PostgresBroker
    from offload._message import Outcome, State

    broker = PostgresBroker(sys.argv[1], namespace=sys.argv[2])
    print("ready", flush=True)
    for line in sys.stdin:  # one job per line: claim it, then ack its number back
        deliveries = []
        while not deliveries:
            broker.wait_for_messages(1.0)
            deliveries = broker.claim(None, 1, 30)
        (delivery,) = deliveries
        broker.ack(delivery, Outcome(State.SUCCEEDED, payload=line.strip().encode()))
    broker.close()
"""


@pytest.fixture
def worker_process(server: str, namespace: str) -> Iterator[subprocess.Popen[str]]:
    process = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(WORKER), server, namespace],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None and process.stdout.readline() == "ready\n"
    yield process
    assert process.stdin is not None
    process.stdin.close()
    process.wait(30)


def test_a_handle_settles_by_push_well_before_the_poll(
    producer: PostgresBroker, worker_process: subprocess.Popen[str]
) -> None:
    watcher = ResultWatcher(producer.inspector, SERIALIZER, "test", feed=producer)
    watcher.FEED_POLL = 30.0  # only the feed can settle a handle within the test's waits
    producer.wait_for_results(0.0)  # listening before the first enqueue, as the watcher will
    assert worker_process.stdin is not None
    took = []
    try:
        for number in range(10):
            handle: Handle[Any] = Handle(enqueue(producer).id, "tasks.work")
            started = time.monotonic()
            watcher.watch(handle)
            worker_process.stdin.write(f"{number}\n")
            worker_process.stdin.flush()
            assert handle.result(timeout=5) == number
            took.append(time.monotonic() - started)
    finally:
        watcher.stop()
    # The worker's wake-up, claim and ack are in there too; the default poll is 0.05 s.
    assert statistics.median(took) < ResultWatcher.FEED_POLL, took


def test_the_watchers_thread_settles_a_handle_nobody_blocks_on_by_push(
    producer: PostgresBroker, worker_process: subprocess.Popen[str]
) -> None:
    watcher = ResultWatcher(producer.inspector, SERIALIZER, "test", feed=producer)
    watcher.FEED_POLL = 30.0
    producer.wait_for_results(0.0)
    assert worker_process.stdin is not None
    try:
        handle: Handle[Any] = Handle(enqueue(producer).id, "tasks.work")
        watcher.watch(handle)
        settled = threading.Event()
        handle.add_done_callback(lambda _: settled.set())  # no thread blocks on it
        worker_process.stdin.write("7\n")
        worker_process.stdin.flush()
        assert settled.wait(5), "the feed's news settles it, not the poll (30 s away)"
        assert handle.result(timeout=0) == 7
    finally:
        watcher.stop()


def test_a_handle_with_a_result_too_big_for_the_news_reads_it(
    producer: PostgresBroker, worker: PostgresBroker
) -> None:
    watcher = ResultWatcher(producer.inspector, SERIALIZER, "test", feed=producer)
    watcher.FEED_POLL = 30.0
    producer.wait_for_results(0.0)
    try:
        handle: Handle[Any] = Handle(enqueue(producer).id, "tasks.work")
        watcher.watch(handle)
        finish(worker, "z" * 20_000)
        assert handle.result(timeout=5) == "z" * 20_000
    finally:
        watcher.stop()


# -- the LISTEN connection ---------------------------------------------------------------


def test_the_feed_listens_again_after_its_connection_is_killed(
    make_broker: Callable[..., PostgresBroker], worker: PostgresBroker, server: str
) -> None:
    name = f"offload_feed_{uuid.uuid4().hex[:16]}"
    producer = make_broker(url=make_conninfo(server, application_name=name))
    producer.wait_for_results(0.0)
    with psycopg.connect(server, autocommit=True) as admin:
        killed = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = %s AND query LIKE 'LISTEN %%'",
            (name,),
        ).fetchall()
        assert killed == [(True,)], "exactly our own LISTEN connection"
    started = time.monotonic()
    assert producer.wait_for_results(5.0) == []  # its connection is gone: it returns
    assert time.monotonic() - started < 2.0
    producer.wait_for_results(0.0)  # listening again
    job = enqueue(producer)
    finish(worker, "again")
    assert hear(producer, 1) == [Finished(job.id, State.SUCCEEDED, b'"again"')]


def test_interrupt_results_ends_a_wait_still_listening_and_loses_nothing(
    producer: PostgresBroker, worker: PostgresBroker
) -> None:
    assert isinstance(producer, Interruptible)
    producer.wait_for_results(0.0)
    returned: list[list[Finished]] = []
    waiter = threading.Thread(
        target=lambda: returned.append(producer.wait_for_results(30.0)), daemon=True
    )
    waiter.start()
    time.sleep(0.1)
    started = time.monotonic()
    producer.interrupt_results()
    waiter.join(2)
    assert returned == [[]] and time.monotonic() - started < 1.0, "ended at once"
    job = enqueue(producer)  # still listening: its enqueue names the channel
    finish(worker, "kept")
    time.sleep(0.2)  # the news waits in the connection
    assert hear(producer, 1) == [Finished(job.id, State.SUCCEEDED, b'"kept"')]
    producer.interrupt_results()  # no wait in progress: it ends the next one
    started = time.monotonic()
    assert producer.wait_for_results(30.0) == []
    assert time.monotonic() - started < 1.0
    started = time.monotonic()
    assert producer.wait_for_results(0.3) == []  # and only that one
    assert time.monotonic() - started >= 0.25


def test_stop_listening_ends_a_wait_in_another_thread(producer: PostgresBroker) -> None:
    producer.wait_for_results(0.0)
    returned = threading.Event()
    waiter = threading.Thread(
        target=lambda: (producer.wait_for_results(30.0), returned.set()), daemon=True
    )
    waiter.start()
    time.sleep(0.1)
    producer.stop_listening()
    assert returned.wait(2), "stop_listening() ends the wait at once"
    waiter.join(2)


# -- the migration -----------------------------------------------------------------------


def test_a_schema_at_version_2_is_migrated_and_its_jobs_run_unheard(
    make_broker: Callable[..., PostgresBroker], server: str, namespace: str
) -> None:
    schema = f"offload_{namespace}"
    old = Message(new_id(), "tasks.work", (), {}, payload=b"[]")
    with psycopg.connect(server, autocommit=True) as connection:  # as offload 2 left it
        connection.execute(f'CREATE SCHEMA "{schema}"')
        connection.execute(f'CREATE TABLE "{schema}".meta (name text PRIMARY KEY, value text)')
        for _, text in MIGRATIONS[:2]:
            connection.execute(fill(text, schema))
        connection.execute(f"INSERT INTO \"{schema}\".meta VALUES ('schema_version', '2')")
        connection.execute(
            f'INSERT INTO "{schema}".jobs (id, task, queue, due, created, payload) '
            "VALUES (%s, 'tasks.work', 'default', 0, 0, '[]')",
            (old.id,),
        )
    assert SCHEMA_VERSION == 4
    producer, worker = make_broker(), make_broker()
    assert producer.inspector.job(old.id) is not None  # its first connection migrates
    producer.wait_for_results(0.0)
    with psycopg.connect(server, autocommit=True) as connection:
        row = connection.execute(
            f"SELECT value FROM \"{schema}\".meta WHERE name = 'schema_version'"
        ).fetchone()
    assert row == (str(SCHEMA_VERSION),)
    finish(worker, "old")  # enqueued by an older offload: no reply channel, no news
    assert producer.wait_for_results(0.3) == []
    job = producer.inspector.job(old.id)
    assert job is not None and (job.state, job.result) == (State.SUCCEEDED, b'"old"')
    new = enqueue(producer)
    finish(worker, "new")
    assert hear(producer, 1) == [Finished(new.id, State.SUCCEEDED, b'"new"')]
