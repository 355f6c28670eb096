"""What the contract suite cannot see of the PostgreSQL broker.

Namespaces, SKIP LOCKED under threads and processes, migrations run from
two processes at once, transactional enqueue, LISTEN/NOTIFY wake-ups and
lost connections. Against the server of ``OFFLOAD_TEST_POSTGRES_URL``
(default: the local one); skipped when it is down, failing under ``CI``.
"""

from __future__ import annotations

import functools
import re
import statistics
import struct
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from helpers import free_port
from offload import BrokerUnavailable, ConfigurationError
from offload._brokers._base import Inspectable, Inspector, Transactional
from offload._brokers._postgres import PostgresBroker, PostgresInspector
from offload._brokers._postgres.queries import COPY_TYPES, fill, lock_id, statements
from offload._brokers._postgres.schema import MIGRATIONS, SCHEMA_VERSION
from offload._brokers._sql_rows import message_row
from offload._message import ErrorInfo, Message, Outcome, State, new_id
from servers import POSTGRES_URL

URL = POSTGRES_URL


def message(**fields: Any) -> Message:
    fields.setdefault("payload", b"[]")
    return Message(new_id(), "tasks.work", (), {}, **fields)


def backend_pid(broker: PostgresBroker) -> int:
    row = broker._link.run(lambda c: c.execute("SELECT pg_backend_pid()").fetchone())
    assert row is not None
    return int(row[0])


def terminate(server: str, pid: int) -> None:
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))


def child(code: str, *args: str, **options: Any) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        **options,
    )


# -- namespaces ------------------------------------------------------------------------


def test_namespaces_isolate(make_broker: Callable[..., PostgresBroker], server: str) -> None:
    other_namespace = f"t_{uuid.uuid4().hex}"
    mine = make_broker()
    other = make_broker(namespace=other_namespace)
    try:
        job = message(key="shared-key")
        mine.enqueue([job])
        assert other.inspector.job(job.id) is None
        assert other.inspector.counts() == {}
        assert other.claim(None, 10, 30) == []
        twin = message(key="shared-key")
        assert other.enqueue([twin]) == [twin.id], "keys are per namespace"
        assert [d.message.id for d in mine.claim(None, 10, 30)] == [job.id]
        assert [d.message.id for d in other.claim(None, 10, 30)] == [twin.id]
    finally:
        other.close()
        with psycopg.connect(server, autocommit=True) as connection:
            connection.execute(f'DROP SCHEMA "offload_{other_namespace}" CASCADE')


def test_a_namespace_must_be_a_plain_identifier(server: str) -> None:
    with pytest.raises(ConfigurationError, match="lower-case letters"):
        PostgresBroker(server, namespace='x"; DROP TABLE jobs; --')


# -- claims under concurrency ------------------------------------------------------------

CLAIMER = """
    import sys
    from offload._brokers._postgres import PostgresBroker
    from offload._message import Outcome, State

    broker = PostgresBroker(sys.argv[1], namespace=sys.argv[2], result_ttl=60)
    print("ready", flush=True)
    sys.stdin.readline()
    while deliveries := broker.claim(None, 10, 30):
        for delivery in deliveries:
            assert broker.ack(delivery, Outcome(State.SUCCEEDED))
            print(delivery.message.id)
    broker.close()
"""


def test_skip_locked_claims_are_race_free(
    make_broker: Callable[..., PostgresBroker], server: str, namespace: str
) -> None:
    producer = make_broker(result_ttl=60)
    ids = producer.enqueue([message() for _ in range(2000)])
    claimers = [child(CLAIMER, server, namespace) for _ in range(2)]
    for claimer in claimers:
        assert claimer.stdout is not None and claimer.stdout.readline() == "ready\n"
    brokers = [make_broker(result_ttl=60) for _ in range(4)]  # a connection per thread
    claimed: list[list[str]] = [[] for _ in brokers]
    start = threading.Barrier(len(brokers) + 1)

    def claim_all(broker: PostgresBroker, into: list[str]) -> None:
        start.wait()
        while deliveries := broker.claim(None, 10, 30):
            for delivery in deliveries:
                assert broker.ack(delivery, Outcome(State.SUCCEEDED))
                into.append(delivery.message.id)

    threads = [
        threading.Thread(target=claim_all, args=(broker, into))
        for broker, into in zip(brokers, claimed, strict=True)
    ]
    for thread in threads:
        thread.start()
    for claimer in claimers:
        assert claimer.stdin is not None
        claimer.stdin.write("go\n")
        claimer.stdin.flush()
    start.wait()
    outputs = [claimer.communicate(timeout=60)[0].split() for claimer in claimers]
    for thread in threads:
        thread.join(60)
    assert all(claimer.returncode == 0 for claimer in claimers)
    everything = [job_id for ids_of in claimed + outputs for job_id in ids_of]
    assert sorted(everything) == sorted(ids), "every job claimed exactly once"
    assert producer.inspector.counts() == {"default": {State.SUCCEEDED: 2000}}
    assert sum(1 for ids_of in claimed + outputs if ids_of) >= 2, "claims did run side by side"


def test_concurrent_enqueues_of_one_key_make_one_job(
    make_broker: Callable[..., PostgresBroker],
) -> None:
    brokers = [make_broker() for _ in range(4)]
    start = threading.Barrier(len(brokers))
    answers: list[list[str]] = []

    def enqueue(broker: PostgresBroker) -> None:
        start.wait()
        for round_ in range(20):
            answers.append(broker.enqueue([message(key=f"k{round_}"), message(key="all")]))

    threads = [threading.Thread(target=enqueue, args=(broker,)) for broker in brokers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(answers) == 80
    assert len({answer[1] for answer in answers}) == 1, "one job for the key 'all'"
    assert brokers[0].inspector.counts() == {"default": {State.QUEUED: 21}}


def test_acks_stored_together_are_fenced_one_by_one(broker: PostgresBroker) -> None:
    kept, dropped = message(), message(result_ttl=0)
    broker.enqueue([kept, dropped])
    first, second = broker.claim(None, 2, 30)
    acks = [
        (first.message.id, first.token, "succeeded", 1.0, 2.0, b"r", *[None] * 4, False),
        (second.message.id, second.token, "succeeded", 1.0, 1.0, None, *[None] * 4, True),
        (first.message.id, first.token, "failed", 1.0, None, None, "E", "e", "", None, False),
        (second.message.id, second.token + 1000, "succeeded", 1.0, 1.0, None, *[None] * 4, True),
    ]
    assert broker._store_acks(acks) == [True, True, False, False]
    job = broker.inspector.job(kept.id)
    assert job is not None and (job.state, job.result) == (State.SUCCEEDED, b"r"), "the first"
    assert broker.inspector.job(dropped.id) is None


# -- migrations --------------------------------------------------------------------------

MIGRATOR = """
    import sys
    from offload._brokers._postgres import PostgresBroker

    broker = PostgresBroker(sys.argv[1], namespace=sys.argv[2], migrate=False)
    print(broker.migrate(), flush=True)
    broker.close()
"""


def waiting_for_lock(server: str, lock: int) -> int:
    """How many sessions wait for the advisory lock ``lock`` (a bigint one)."""
    unsigned = lock & 0xFFFF_FFFF_FFFF_FFFF
    with psycopg.connect(server, autocommit=True) as connection:
        row = connection.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
            "AND classid = %s::bigint::oid AND objid = %s::bigint::oid AND objsubid = 1",
            (unsigned >> 32, unsigned & 0xFFFF_FFFF),
        ).fetchone()
    return 0 if row is None else int(row[0])


def test_two_processes_migrating_at_once_are_safe(server: str, namespace: str) -> None:
    # This test holds the migration lock first, so both processes are
    # surely inside migrate() together, queued on it.
    lock = lock_id(f"migrate:offload_{namespace}")
    with psycopg.connect(server) as holder:
        holder.execute("SELECT pg_advisory_xact_lock(%s)", (lock,))
        migrators = [child(MIGRATOR, server, namespace) for _ in range(2)]
        deadline = time.monotonic() + 20
        while waiting_for_lock(server, lock) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert waiting_for_lock(server, lock) == 2, "both wait for the lock"
        holder.rollback()
    outputs = [migrator.communicate(timeout=30)[0] for migrator in migrators]
    assert [migrator.returncode for migrator in migrators] == [0, 0]
    assert outputs == [f"{SCHEMA_VERSION}\n"] * 2
    with psycopg.connect(server) as connection:
        rows = connection.execute(
            "SELECT name, value FROM " + f'"offload_{namespace}".meta'
        ).fetchall()
    assert rows == [("schema_version", str(SCHEMA_VERSION))]


def test_a_newer_schema_is_refused(make_broker: Callable[..., PostgresBroker]) -> None:
    broker = make_broker()
    assert broker.migrate() == SCHEMA_VERSION
    broker._link.run(
        lambda c: c.execute(
            f"UPDATE \"{broker.schema}\".meta SET value = %s WHERE name = 'schema_version'",
            (str(SCHEMA_VERSION + 1),),
        )
    )
    with pytest.raises(
        ConfigurationError, match=r"newer offload.*Upgrade offload.*not on the package"
    ):
        broker.migrate()
    newcomer = make_broker()
    with pytest.raises(ConfigurationError, match="Upgrade offload"):
        newcomer.enqueue([message()])


def test_without_migrate_an_old_schema_is_refused(
    make_broker: Callable[..., PostgresBroker],
) -> None:
    broker = make_broker(migrate=False)
    with pytest.raises(ConfigurationError, match="offload migrate"):
        broker.enqueue([message()])
    assert broker.migrate() == SCHEMA_VERSION
    m = message()
    assert broker.enqueue([m]) == [m.id]


def test_a_schema_at_version_1_is_migrated_with_its_jobs(
    make_broker: Callable[..., PostgresBroker], server: str, namespace: str
) -> None:
    schema = f'"offload_{namespace}"'
    old = message()
    with psycopg.connect(server, autocommit=True) as connection:  # as offload 1 left it
        connection.execute(f"CREATE SCHEMA {schema}")
        connection.execute(f"CREATE TABLE {schema}.meta (name text PRIMARY KEY, value text)")
        connection.execute(fill(MIGRATIONS[0][1], f"offload_{namespace}"))
        connection.execute(f"INSERT INTO {schema}.meta VALUES ('schema_version', '1')")
        connection.execute(
            f"INSERT INTO {schema}.jobs (id, task, queue, due, created, state, error_type, "
            "error_message, error_traceback) VALUES (%s, 't', 'default', 0, 0, 'failed', "
            "'x.E', 'm', 'tb')",
            (old.id,),
        )
    broker = make_broker()
    job = broker.inspector.job(old.id)
    assert SCHEMA_VERSION >= 3  # what came after 3 applies on top
    assert job is not None and job.error == ErrorInfo("x.E", "m", "tb", None)
    broker.enqueue([message()])
    (delivery,) = broker.claim(None, 1, 30)
    assert broker.ack(delivery, Outcome.failure(KeyError("k")))
    failed = broker.inspector.job(delivery.message.id)
    assert (
        failed is not None and failed.error is not None and failed.error.type == "builtins.KeyError"
    )


def test_repr_names_the_server_and_schema_never_the_password() -> None:
    broker = PostgresBroker("postgresql://app:s3cr3t-pw@db.internal:6543/app", namespace="shop")
    try:  # nothing connects
        assert repr(broker) == (
            "<PostgresBroker PostgreSQL at db.internal:6543/app schema='offload_shop'>"
        )
    finally:
        broker.close()


# -- the statements ----------------------------------------------------------------------

LIVE = "state IN ('queued', 'retrying', 'running')"


def test_the_named_queries_agree_with_the_code() -> None:
    sql = {name: " ".join(text.split()) for name, text in statements().items()}
    picked = f"WHERE {LIVE} AND due <= (SELECT %(now)s::float8)"
    assert sql["claim"].count(picked) == 1
    queue = f"{picked} AND queue = (SELECT %(queue)s::text)"
    assert sql["claim_queue"] == sql["claim"].replace(picked, queue)
    words = sql["insert_many"].split()
    casts = [word.split("::")[1].rstrip(",)[]") for word in words if "[]" in word]
    assert tuple(casts[: len(COPY_TYPES)]) == COPY_TYPES, "one column order for INSERT and COPY"
    columns = [
        " ".join(sql[name].split("(", 2)[2 if name != "copy" else 1].split(")")[0].split())
        for name in ("insert_one", "insert_many", "copy")
    ]
    assert columns[0] == columns[1] == columns[2] + ", state", columns
    for name, text in sql.items():  # the partial indexes' spelling, or they go unused
        lists = re.findall(r"state IN \([^)]*'running'[^)]*\)", text)
        assert all(found == LIVE for found in lists), f"{name}: live states spelled {lists}"


def test_every_query_fills_in_for_a_schema() -> None:
    for name, template in statements().items():
        text = fill(template, "offload_x")
        assert "{" not in text and "}" not in text, name
        assert "{s}" not in template or '"offload_x"' in text, name


# -- capabilities -------------------------------------------------------------------------


def test_the_broker_declares_its_capabilities() -> None:
    broker = PostgresBroker(URL, namespace="never")  # nothing connects
    try:
        assert isinstance(broker, Transactional) and isinstance(broker, Inspectable)
        assert isinstance(broker.inspector, PostgresInspector)
        assert isinstance(broker.inspector, Inspector)
        assert broker.inspector is broker.inspector
    finally:
        broker.close()


@pytest.mark.parametrize("connection", [object(), "postgresql://app@db/app", None])
def test_an_enqueue_in_a_connection_of_another_kind_is_refused(connection: Any) -> None:
    broker = PostgresBroker(URL, namespace="never")  # refused before anything connects
    try:
        with pytest.raises(ConfigurationError, match=r"psycopg 3 connection.*psycopg\.connect"):
            broker.enqueue_in([message()], connection)
    finally:
        broker.close()


def test_an_enqueue_in_another_database_is_refused(broker: PostgresBroker, server: str) -> None:
    with psycopg.connect(make_conninfo(server, dbname="postgres")) as elsewhere:
        with pytest.raises(ConfigurationError, match="no offload schema"):
            broker.enqueue_in([message()], elsewhere)
        elsewhere.rollback()


# -- transactional enqueue ----------------------------------------------------------------


def test_an_enqueue_on_the_callers_connection_commits_with_it(
    broker: PostgresBroker, server: str
) -> None:
    plain, keyed = message(), message(key="order:1")
    with psycopg.connect(server) as connection:
        connection.execute("CREATE TEMP TABLE orders (id int)")
        connection.execute("INSERT INTO orders VALUES (1)")
        assert broker.enqueue_in([plain, keyed], connection) == [plain.id, keyed.id]
        assert broker.inspector.job(plain.id) is None, "not visible before the caller commits"
        connection.commit()
    assert {d.message.id for d in broker.claim(None, 10, 30)} == {plain.id, keyed.id}


def test_an_enqueue_on_the_callers_connection_rolls_back_with_it(
    broker: PostgresBroker, server: str
) -> None:
    plain, keyed = message(), message(key="order:2")
    with psycopg.connect(server) as connection:
        broker.enqueue_in([plain], connection)
        broker.enqueue_in([keyed], connection)
        connection.rollback()
    assert broker.inspector.job(plain.id) is None
    assert broker.inspector.job(keyed.id) is None
    assert broker.claim(None, 10, 30) == []
    again = message(key="order:2")
    assert broker.enqueue([again]) == [again.id], "the rolled-back job held no key"


def test_an_autocommit_callers_connection_commits_at_once(
    broker: PostgresBroker, server: str
) -> None:
    m = message(key="k")
    with psycopg.connect(server, autocommit=True) as connection:
        assert broker.enqueue_in([m], connection) == [m.id]
    job = broker.inspector.job(m.id)
    assert job is not None and job.state is State.QUEUED


def test_a_committed_transactional_enqueue_wakes_a_waiter(
    broker: PostgresBroker, server: str
) -> None:
    broker.wait_for_messages(0.01)  # LISTEN now: the wait below must not need it
    woke = threading.Event()
    with psycopg.connect(server) as connection:
        broker.enqueue_in([message()], connection)
        waiter = threading.Thread(
            target=lambda: (broker.wait_for_messages(10), woke.set()), daemon=True
        )
        waiter.start()
        assert not woke.wait(0.3), "nothing is claimable before the commit"
        connection.commit()
    assert woke.wait(5)
    waiter.join(5)


# -- wake-ups ----------------------------------------------------------------------------

WAITER = """
    import struct, sys, time
    from offload._brokers._postgres import PostgresBroker
    from offload._message import Outcome, State

    broker = PostgresBroker(sys.argv[1], namespace=sys.argv[2], result_ttl=0)
    count = int(sys.argv[3])
    broker.wait_for_messages(0.01)  # LISTEN before saying ready
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
    broker.close()
"""


def test_a_waiting_process_wakes_up_for_another_process_enqueue(
    broker: PostgresBroker, server: str, namespace: str
) -> None:
    """Enqueue to claim across processes: median of 200; a sanity bound, not a benchmark."""
    count = 200
    waiter = child(WAITER, server, namespace, str(count))
    assert waiter.stdout is not None and waiter.stdout.readline() == "ready\n"
    latencies = []
    for _ in range(count):
        time.sleep(0.002)  # let the waiter go idle
        # time.monotonic is one clock for every process of the machine.
        broker.enqueue([message(payload=struct.pack("d", time.monotonic()))])
        latencies.append(float(waiter.stdout.readline()))
    waiter.communicate(timeout=30)
    median = statistics.median(latencies)
    print(f"enqueue -> claim across processes: median {median * 1000:.2f} ms")
    assert median < 1.0, latencies


def test_a_waiter_ignores_other_queues_until_the_timeout(broker: PostgresBroker) -> None:
    broker.wait_for_messages(0.01)
    woke = threading.Event()
    waiter = threading.Thread(
        target=lambda: (broker.wait_for_messages(0.5, ["mail"]), woke.set()), daemon=True
    )
    started = time.monotonic()
    waiter.start()
    time.sleep(0.05)
    broker.enqueue([message(queue="default")])
    assert woke.wait(5)
    assert time.monotonic() - started >= 0.45, "woken by another queue's message"


def test_interrupt_wakes_a_waiter_within_a_second(broker: PostgresBroker) -> None:
    returned = threading.Event()
    waiter = threading.Thread(
        target=lambda: (broker.wait_for_messages(30), returned.set()), daemon=True
    )
    waiter.start()
    time.sleep(0.2)
    started = time.monotonic()
    broker.interrupt()
    assert returned.wait(1.0)
    assert time.monotonic() - started < 1.0
    waiter.join(5)


# -- connection loss ---------------------------------------------------------------------


def test_the_broker_reconnects_after_its_backend_is_terminated(
    broker: PostgresBroker, server: str
) -> None:
    first = message()
    broker.enqueue([first])
    terminate(server, backend_pid(broker))
    second = message()
    assert broker.enqueue([second]) == [second.id]
    terminate(server, backend_pid(broker))
    claimed = broker.claim(None, 10, 30)
    assert {d.message.id for d in claimed} == {first.id, second.id}
    terminate(server, backend_pid(broker))
    assert all(broker.ack(d, Outcome(State.SUCCEEDED)) for d in claimed)
    assert broker.inspector.counts() == {"default": {State.SUCCEEDED: 2}}


def test_a_waiter_survives_the_loss_of_its_listen_connection(
    broker: PostgresBroker, server: str
) -> None:
    broker.wait_for_messages(0.01)
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query = %s",
            (f'LISTEN "{broker.schema}"',),
        )
    broker.wait_for_messages(1.0)  # returns early: its connection is gone
    broker.wait_for_messages(0.01)  # listening again
    woke = threading.Event()
    waiter = threading.Thread(
        target=lambda: (broker.wait_for_messages(10), woke.set()), daemon=True
    )
    waiter.start()
    time.sleep(0.1)
    broker.enqueue([message()])
    assert woke.wait(5)
    waiter.join(5)


def test_an_enqueue_that_cannot_reach_the_server_raises_in_bounded_time() -> None:
    down = f"postgresql://postgres@127.0.0.1:{free_port()}/test"
    broker = PostgresBroker(down, namespace="never", retry_for=1.0, connect_timeout=2)
    started = time.monotonic()
    with pytest.raises(BrokerUnavailable, match=r"cannot reach PostgreSQL at 127\.0\.0\.1"):
        broker.enqueue([message()])
    assert time.monotonic() - started < 5
    assert isinstance(BrokerUnavailable("x"), ConnectionError)
    broker.close()


def test_a_retry_after_a_commit_it_never_heard_of_answers_the_stored_ids(
    broker: PostgresBroker,
) -> None:
    """The connection broke while the batch committed: the retry meets its own ids."""
    batch = [message() for _ in range(3)]
    ids = [m.id for m in batch]
    rows = [message_row(m, 0.0) for m in batch]
    store = functools.partial(broker._writer.store, messages=batch, rows=rows, now=0.0)
    work = broker._writer.retrying(store, ids)
    assert broker._link.run(work) == ids  # the attempt whose reply was lost
    assert broker._link.run(work) == ids  # its retry
    assert broker.inspector.counts() == {"default": {State.QUEUED: 3}}
    with pytest.raises(ValueError, match="already exists"):
        broker.enqueue(batch)  # a new call, not a retry: the ids are taken
