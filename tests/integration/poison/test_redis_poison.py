"""Poison in Redis: one damaged job is dead-lettered alone, every other job runs.

Anyone who reaches the server can change or delete a job's hash (or Redis
evicts it under memory pressure), and Redis does not undo a script that
fails half-way: a claim that stopped on one bad job would lose the good
jobs it had popped with it. Each case here writes straight into one job's
hash (HSET, HDEL, DEL) beside good jobs, then runs a real worker, or the
broker's claim, ack, nack and extend as a worker calls them: the good jobs
succeed, the bad one fails with a reason naming what is wrong (or, when
nothing of it is left, is gone from every index), the worker keeps working,
and every job is accounted for through inspection. The property tests feed
the decoders arbitrary values, and a real hash arbitrary bytes.

Runs against the Redis test server (tests/servers.py), each test in a key
namespace of its own, dropped after.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

redis = pytest.importorskip("redis")

import offload  # noqa: E402
from helpers import wait_until  # noqa: E402
from offload import BrokerUnavailable, ConfigurationError, State  # noqa: E402
from offload._brokers._base import Finished, Lease  # noqa: E402
from offload._brokers._redis import RedisBroker, rows, scripts  # noqa: E402
from offload._brokers._redis.claims import ack_values  # noqa: E402
from offload._errors import MessageRejected, TaskNotFound  # noqa: E402
from offload._message import (  # noqa: E402
    Delivery,
    ErrorInfo,
    JobInfo,
    Message,
    Outcome,
    message_problem,
    new_id,
)
from offload.testing import FakeClock  # noqa: E402
from servers import require_redis  # noqa: E402

GOOD = 6
"""Good jobs enqueued beside each bad one (one claim batch: the worker runs 4 at once)."""
WAIT = 4.0


def double(x: int) -> int:
    return 2 * x


@pytest.fixture
def app() -> Iterator[offload.App]:
    namespace = f"test-{uuid.uuid4().hex}"
    instance = offload.App(require_redis(), namespace=namespace, name="poison")
    try:
        yield instance
    finally:
        instance.shutdown(wait=False)
        RedisBroker.from_url(require_redis(), namespace=namespace).drop()


def job_key(broker: Any, job_id: str | bytes) -> bytes:
    ident = job_id if isinstance(job_id, bytes) else job_id.encode()
    return f"{broker.prefix}job:".encode() + ident


def corrupt(raw: Any, broker: Any, job_id: str, field: str, value: bytes | None) -> None:
    """Write ``value`` into one field of a job's hash (``None``: delete the field)."""
    key = job_key(broker, job_id)
    assert raw.exists(key)
    if value is None:
        raw.hdel(key, field)
    else:
        raw.hset(key, field, value)


def message(**fields: Any) -> Message:
    fields.setdefault("payload", b'{"args": []}')
    fields.setdefault("created", time.time())
    return Message(new_id(), "tasks.work", (), {}, **fields)


def counts(broker: Any) -> dict[State, int]:
    """Jobs per state, over every queue."""
    total: dict[State, int] = {}
    for per in broker.inspector.counts().values():
        for state, number in per.items():
            total[state] = total.get(state, 0) + number
    return total


# -- a real worker ----------------------------------------------------------------------


class Run(NamedTuple):
    states: dict[str, State]
    worker_alive: bool
    after: int
    """The result of a job enqueued once the others had settled."""


def run_worker(app: offload.App, ids: list[str], settled: Any = None) -> Run:
    """Run a worker until every job of ``ids`` finished (or ``settled(states)``).

    The worker is another app on the same namespace, as in production: the
    producer's handles settle from the broker alone.
    """
    broker: Any = app.broker
    worker_app = offload.App(require_redis(), namespace=broker.namespace, name="poison-worker")
    worker_app.task(double)
    worker = worker_app.worker(concurrency=4)
    worker.start()
    try:
        done = settled or (lambda found: all(state.finished for state in found.values()))
        assert wait_until(lambda: done(broker.inspector.job_states(ids)), WAIT), (
            broker.inspector.job_states(ids)
        )
        after = app.task(double)(21).result(timeout=WAIT)  # the worker still claims and runs
        alive = all(thread.is_alive() for thread in worker._threads)
    finally:
        worker.stop()
        worker_app.shutdown(wait=False)
    return Run(broker.inspector.job_states(ids), alive, after)


def enqueue_with_one_bad(app: offload.App, **options: Any) -> tuple[list[offload.Handle[int]], str]:
    task = app.task(double)
    call = task.options(**options) if options else task
    handles = [call(i) for i in range(GOOD)]
    bad = call(100)
    handles.insert(GOOD // 2, bad)  # in the middle of the claim batch
    return handles, bad.id


def assert_the_others_succeeded(handles: list[offload.Handle[int]], bad: str) -> None:
    good = [h for h in handles if h.id != bad]
    assert [h.result(timeout=WAIT) for h in good] == [2 * i for i in range(GOOD)]


def assert_failed_alone(
    app: offload.App, handles: list[offload.Handle[int]], bad: str, reason: str, run: Run
) -> None:
    ids = [h.id for h in handles]
    assert run.states == {i: State.FAILED if i == bad else State.SUCCEEDED for i in ids}, (
        "nothing lost, only the bad one failed"
    )
    assert_the_others_succeeded(handles, bad)
    job = app.job(bad)
    assert job is not None and job.state is State.FAILED and job.error is not None
    assert reason in job.error.message, job.error.message
    assert "cannot be run" in job.error.message
    # (A lost state field may have failed the handle first, from the record.)
    with pytest.raises(MessageRejected, match=r"cannot be run|is corrupt"):
        next(h for h in handles if h.id == bad).result(timeout=WAIT)
    assert counts(app.broker) == {State.SUCCEEDED: GOOD + 1, State.FAILED: 1}, "no phantoms"
    assert run.worker_alive and run.after == 42


def meta_blob(raw: Any, broker: Any, job_id: str) -> list[Any]:
    return json.loads(raw.hget(job_key(broker, job_id), "m"))  # type: ignore[no-any-return]


def with_meta(index: int, value: Any) -> Callable[[list[Any]], bytes]:
    def change(blob: list[Any]) -> bytes:
        blob[index] = value
        return json.dumps(blob).encode()

    return change


# field, what to write (bytes, None to delete, or a change of the ``m`` list), the reason.
DEFECTS = [
    pytest.param("a", b"x", "attempt count (a)", id="attempt-text"),
    pytest.param("a", b"1e3", "attempt count (a)", id="attempt-real"),
    pytest.param("a", None, "attempt count (a) field is missing", id="attempt-missing"),
    pytest.param("p", b"high", "priority (p)", id="priority-text"),
    pytest.param("p", b"nan", "priority (p)", id="priority-nan"),
    pytest.param("p", None, "priority (p) field is missing", id="priority-missing"),
    pytest.param("js", b"x", "sequence field (js)", id="sequence-text"),
    pytest.param("js", None, "sequence field (js) is missing", id="sequence-missing"),
    pytest.param("md", b"ten", "max_deliveries (md)", id="max_deliveries-text"),
    pytest.param("md", b"0", "max_deliveries=0", id="max_deliveries-zero"),
    pytest.param("ttl", b"1 day", "result_ttl (ttl)", id="result_ttl-text"),
    pytest.param("ttl", b"-1", "result_ttl=-1.0", id="result_ttl-negative"),
    pytest.param("eta", b"soon", "eta", id="eta-text"),
    pytest.param("k", b"\xff", "key (k)", id="key-not-utf8"),
    pytest.param("q", None, "queue field (q) was missing", id="queue-missing"),
    pytest.param("q", b"\xffelsewhere", "queue (q) field holds", id="queue-not-utf8"),
    pytest.param("s", None, "state field (s) is missing", id="state-missing"),
    pytest.param("s", b"paused", "state field (s) is 'paused'", id="state-unknown"),
    pytest.param("m", b"{not json", "message (m)", id="meta-not-json"),
    pytest.param("m", b'{"task": "x"}', "message (m)", id="meta-a-map"),
    pytest.param("m", b'["x", null, null, 1.0, null]', "message (m)", id="meta-short"),
    pytest.param("m", b'["\xff\xfe", null, null, 1.0, null, false]', "message (m)", id="meta-utf8"),
    pytest.param("m", None, "message (m) field is missing", id="meta-missing"),
    pytest.param("m", with_meta(0, 42), "task name must be a str", id="task-a-number"),
    pytest.param("m", with_meta(0, ""), "task name must not be empty", id="task-empty"),
    pytest.param("m", with_meta(1, "1s"), "timeout must be", id="timeout-text"),
    pytest.param("m", with_meta(2, -3), "retries=-3", id="retries-negative"),
    pytest.param("m", with_meta(3, "yesterday"), "created must be", id="created-text"),
    pytest.param("m", with_meta(4, [1]), "meta must be a map", id="meta-a-list"),
]


def write(raw: Any, app: offload.App, bad: str, field: str, value: Any) -> None:
    if callable(value):
        value = value(meta_blob(raw, app.broker, bad))
    corrupt(raw, app.broker, bad, field, value)


@pytest.mark.parametrize(("field", "value", "reason"), DEFECTS)
def test_a_corrupt_field_fails_its_job_alone(
    app: offload.App, raw: Any, field: str, value: Any, reason: str
) -> None:
    handles, bad = enqueue_with_one_bad(app)
    write(raw, app, bad, field, value)
    run = run_worker(app, [h.id for h in handles])
    assert_failed_alone(app, handles, bad, reason, run)


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        pytest.param("p", b"top", "priority (p)", id="priority-text"),
        pytest.param("p", b"nan", "priority (p)", id="priority-nan"),
        pytest.param("q", None, "queue field (q) was missing", id="queue-missing"),
        pytest.param("js", b"x", "sequence field (js)", id="sequence-text"),
        pytest.param("m", b"[", "message (m)", id="meta-not-json"),
    ],
)
def test_a_corrupt_delayed_job_is_promoted_then_fails_alone(
    app: offload.App, raw: Any, field: str, value: Any, reason: str
) -> None:
    """The promotion of due delayed jobs (at the top of every claim) meets it first."""
    handles, bad = enqueue_with_one_bad(app, delay=0.3)
    write(raw, app, bad, field, value)
    assert counts(app.broker) == {State.QUEUED: GOOD + 1}
    run = run_worker(app, [h.id for h in handles])
    assert_failed_alone(app, handles, bad, reason, run)


def test_several_corrupt_jobs_in_one_batch_fail_each_alone(app: offload.App, raw: Any) -> None:
    task = app.task(double)
    handles = [task(i) for i in range(12)]
    bad = {handles[1].id: "message (m)", handles[4].id: "priority (p)", handles[7].id: "(js)"}
    corrupt(raw, app.broker, handles[1].id, "m", b"oops")
    corrupt(raw, app.broker, handles[4].id, "p", b"top")
    corrupt(raw, app.broker, handles[7].id, "js", b"")
    run = run_worker(app, [h.id for h in handles])
    for number, handle in enumerate(handles):
        if handle.id in bad:
            assert run.states[handle.id] is State.FAILED
            job = app.job(handle.id)
            assert job is not None and job.error is not None
            assert bad[handle.id] in job.error.message
        else:
            assert run.states[handle.id] is State.SUCCEEDED
            assert handle.result(timeout=WAIT) == 2 * number
    assert run.worker_alive and run.after == 42


@pytest.mark.parametrize("kind", ["deleted", "not-a-hash"])
def test_a_job_whose_hash_is_gone_is_dropped_and_the_others_run(
    app: offload.App, raw: Any, kind: str
) -> None:
    """Deleted or evicted: nothing to run or report; it leaves no index entry behind."""
    handles, bad = enqueue_with_one_bad(app)
    raw.delete(job_key(app.broker, bad))
    if kind == "not-a-hash":
        raw.set(job_key(app.broker, bad), b"something else")
    ids = [h.id for h in handles]
    run = run_worker(
        app, ids, settled=lambda found: list(found.values()).count(State.SUCCEEDED) == GOOD
    )
    good = [i for i in ids if i != bad]
    assert {i: run.states[i] for i in good} == dict.fromkeys(good, State.SUCCEEDED)
    assert_the_others_succeeded(handles, bad)
    assert counts(app.broker) == {State.SUCCEEDED: GOOD + 1}, "no phantom in the counts"
    assert raw.zcard(f"{app.broker.prefix}ready:default") == 0  # type: ignore[attr-defined]
    bad_handle = next(h for h in handles if h.id == bad)
    if kind == "deleted":
        assert app.job(bad) is None
        with pytest.raises(TaskNotFound):
            bad_handle.result(timeout=WAIT)
    else:  # what is there shows, as a failed job whose record cannot be read
        job = app.job(bad)
        assert job is not None and job.state is State.FAILED and job.error is not None
        assert "holds another kind of value than a hash" in job.error.message
        with pytest.raises(MessageRejected, match="another kind of value"):
            bad_handle.result(timeout=WAIT)
    assert run.worker_alive and run.after == 42


def test_a_job_id_that_is_not_utf8_fails_that_job_and_is_still_listed(
    app: offload.App, raw: Any
) -> None:
    handles, bad = enqueue_with_one_bad(app)
    prefix = app.broker.prefix  # type: ignore[attr-defined]
    # The same job under an id that is not UTF-8, in every place that names it.
    strange = b"\xff" + bad.encode()
    member = raw.hget(job_key(app.broker, bad), "r")
    score = raw.zscore(f"{prefix}ready:default", member)
    raw.zrem(f"{prefix}ready:default", member)
    raw.zadd(f"{prefix}ready:default", {member[: scripts.RANK_LENGTH] + strange: score})
    raw.rename(job_key(app.broker, bad), job_key(app.broker, strange))
    sequence = raw.zscore(f"{prefix}st:queued:default", bad)
    raw.zrem(f"{prefix}st:queued:default", bad)
    raw.zadd(f"{prefix}st:queued:default", {strange: sequence})
    ids = [h.id for h in handles if h.id != bad]
    run = run_worker(app, ids)
    assert set(run.states.values()) == {State.SUCCEEDED}
    assert counts(app.broker) == {State.SUCCEEDED: GOOD + 1, State.FAILED: 1}
    (failed,) = app.broker.inspector.jobs(State.FAILED)  # type: ignore[attr-defined]
    assert failed.id == "\\xff" + bad and failed.error is not None
    assert "its id is not UTF-8 text" in failed.error.message
    assert run.worker_alive and run.after == 42


# -- the original loss: a claim that stopped half-way -------------------------------------


@pytest.mark.parametrize(("field", "value"), [("a", b"x"), ("js", b"x"), ("q", None)])
def test_a_claim_batch_with_a_corrupt_job_loses_none(
    make_broker: Callable[..., RedisBroker], raw: Any, field: str, value: bytes | None
) -> None:
    """Before: the script failed on the bad job, after ZPOPMIN had taken the batch."""
    broker = make_broker()
    sent = [message() for _ in range(5)]
    broker.enqueue(sent)
    corrupt(raw, broker, sent[2].id, field, value)
    deliveries = broker.claim(None, 5, 30)
    assert [d.message.id for d in deliveries] == [m.id for m in sent]
    defects = [d for d in deliveries if d.defect is not None]
    assert [d.message.id for d in defects] == [sent[2].id]
    for delivery in deliveries:
        outcome = Outcome.failure(MessageRejected("x")) if delivery.defect else Outcome.success(1)
        assert broker.ack(delivery, outcome)
    assert counts(broker) == {State.SUCCEEDED: 4, State.FAILED: 1}


# -- leases that lapse -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        pytest.param("a", b"x", "attempt count (a)", id="attempt-text"),
        pytest.param("md", b"many", "max_deliveries (md)", id="max_deliveries-text"),
        pytest.param("p", b"nan", "priority (p)", id="priority-nan"),
        pytest.param("q", None, "queue field (q) was missing", id="queue-missing"),
        pytest.param("js", b"?", "sequence field (js)", id="sequence-text"),
        pytest.param("s", None, "state field (s)", id="state-missing"),
    ],
)
def test_a_lapsed_lease_of_a_corrupt_job_comes_back_as_a_defect(
    make_broker: Callable[..., RedisBroker], raw: Any, field: str, value: Any, reason: str
) -> None:
    clock = FakeClock(time.time())
    broker = make_broker(clock=clock)
    sent = [message() for _ in range(3)]
    broker.enqueue(sent)
    assert len(broker.claim(None, 3, 30)) == 3
    corrupt(raw, broker, sent[1].id, field, value)  # while its worker runs it, then dies
    clock.advance(31)
    deliveries = broker.claim(None, 3, 30)
    assert sorted(d.message.id for d in deliveries) == sorted(m.id for m in sent)
    (defect,) = [d for d in deliveries if d.defect is not None]
    assert defect.message.id == sent[1].id and reason in defect.defect  # type: ignore[operator]
    for delivery in deliveries:
        outcome = (
            Outcome.failure(MessageRejected(delivery.defect or ""))
            if delivery.defect
            else (Outcome.success(None))
        )
        assert broker.ack(delivery, outcome)
    assert counts(broker) == {State.SUCCEEDED: 2, State.FAILED: 1}


def test_a_lapsed_lease_of_a_vanished_job_leaves_nothing_behind(
    make_broker: Callable[..., RedisBroker], raw: Any
) -> None:
    clock = FakeClock(time.time())
    broker = make_broker(clock=clock)
    sent = [message() for _ in range(3)]
    broker.enqueue(sent)
    broker.claim(None, 3, 30)
    raw.delete(job_key(broker, sent[0].id))
    clock.advance(31)
    assert sorted(d.message.id for d in broker.claim(None, 3, 30)) == sorted(m.id for m in sent[1:])
    assert counts(broker) == {State.RUNNING: 2}


# -- ack, nack and extend of a job damaged while it ran ------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [("js", b"x"), ("js", None), ("q", None), ("p", b"nan"), ("a", b"?"), ("rt", b"")],
)
def test_ack_nack_and_extend_of_a_job_damaged_while_it_ran_succeed(
    make_broker: Callable[..., RedisBroker], raw: Any, field: str, value: bytes | None
) -> None:
    clock = FakeClock(time.time())
    broker = make_broker(clock=clock)
    sent = [message() for _ in range(3)]
    broker.enqueue(sent)
    first, second, third = broker.claim(None, 3, 30)
    for delivery in (first, second, third):
        corrupt(raw, broker, delivery.message.id, field, value)
    assert all(broker.extend(d, 60) is Lease.HELD for d in (first, second, third))
    assert broker.nack(second, None, error=ErrorInfo("E", "retry me", ""))
    assert broker.nack(third, None, penalty=False)
    assert broker.ack(first, Outcome.success(None))
    again = broker.claim(None, 3, 30)
    assert sorted(d.message.id for d in again) == sorted([second.message.id, third.message.id])
    for delivery in again:
        error = MessageRejected(delivery.defect or "") if delivery.defect else None
        assert broker.ack(delivery, Outcome.failure(error) if error else Outcome.success(2))
    assert sum(counts(broker).values()) == 3, "every job accounted for"
    assert set(counts(broker)) <= {State.SUCCEEDED, State.FAILED}


def test_one_bad_ack_in_a_batch_never_fails_the_others(
    make_broker: Callable[..., RedisBroker], raw: Any
) -> None:
    broker = make_broker()
    sent = [message() for _ in range(4)]
    broker.enqueue(sent)
    deliveries = broker.claim(None, 4, 30)
    corrupt(raw, broker, deliveries[1].message.id, "js", b"not a number")
    corrupt(raw, broker, deliveries[2].message.id, "q", None)
    # A value that cannot even be sent: an id no script can take.
    unsendable = Delivery(Message("\udcff", "tasks.work", (), {}), 1, 0.0)
    batch = [*deliveries[:2], unsendable, *deliveries[2:]]
    values = [ack_values(d, Outcome.success(1), time.time(), 60.0) for d in batch]
    answers = broker._path._ack_together(values)
    assert answers[:2] == [True, True] and answers[3:] == [True, True]
    assert isinstance(answers[2], UnicodeEncodeError)
    assert counts(broker) == {State.SUCCEEDED: 4}


# -- cancel, retry, purge and prune --------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"), [("ttl", b"long"), ("ttl", b"nan"), ("js", b"x"), ("q", None), ("s", None)]
)
def test_cancel_of_a_damaged_job_never_fails_half_way(
    make_broker: Callable[..., RedisBroker], raw: Any, field: str, value: bytes | None
) -> None:
    broker = make_broker()
    sent = [message() for _ in range(3)]
    broker.enqueue(sent)
    corrupt(raw, broker, sent[1].id, field, value)
    assert broker.inspector.cancel(sent[1].id) is (field != "s")  # with no state, it is not queued
    deliveries = broker.claim(None, 3, 30)
    for delivery in deliveries:
        error = MessageRejected(delivery.defect) if delivery.defect else None
        assert broker.ack(delivery, Outcome.failure(error) if error else Outcome.success(1))
    assert sum(counts(broker).values()) == 3
    assert set(counts(broker)) <= {State.SUCCEEDED, State.CANCELLED, State.FAILED}


def test_a_retried_defect_runs_as_it_now_is(
    make_broker: Callable[..., RedisBroker], raw: Any
) -> None:
    """A person retries it (after repairing what was wrong, say): the mark goes."""
    clock = FakeClock(time.time())
    broker = make_broker(clock=clock)
    sent = message()
    broker.enqueue([sent])
    broker.claim(None, 1, 30)
    raw.hdel(job_key(broker, sent.id), "q")  # lost while it ran
    clock.advance(31)
    (defect,) = broker.claim(None, 1, 30)
    assert defect.defect == "its queue field (q) was missing"
    assert broker.ack(defect, Outcome.failure(MessageRejected(defect.defect)))
    assert broker.inspector.retry(sent.id)
    (again,) = broker.claim(None, 1, 30)
    assert again.defect is None and again.message.queue == "default" and again.attempt == 1


def test_purge_and_prune_clear_damaged_and_vanished_jobs(
    make_broker: Callable[..., RedisBroker], raw: Any
) -> None:
    clock = FakeClock(time.time())
    broker = make_broker(clock=clock, result_ttl=10)
    sent = [message() for _ in range(6)]
    broker.enqueue(sent)
    for number, delivery in enumerate(broker.claim(None, 6, 30)):
        outcome = Outcome.failure(ValueError("x")) if number < 3 else Outcome.success(1)
        broker.ack(delivery, outcome)
    raw.delete(job_key(broker, sent[0].id))  # failed, then evicted
    corrupt(raw, broker, sent[1].id, "s", None)
    corrupt(raw, broker, sent[2].id, "q", None)
    raw.delete(job_key(broker, sent[3].id))  # succeeded, then evicted
    corrupt(raw, broker, sent[4].id, "k", b"\xff")
    assert broker.inspector.purge(State.FAILED) == 3
    clock.advance(11)
    assert broker.inspector.prune() == 2
    assert broker.inspector.counts() == {}
    assert [k for k in raw.scan_iter(f"{broker.prefix}job:*")] == []


# -- counters other than a job's ------------------------------------------------------------


def test_an_overwritten_change_token_starts_again(
    make_broker: Callable[..., RedisBroker], raw: Any
) -> None:
    broker = make_broker()
    broker.enqueue([message(), message()])
    raw.set(f"{broker.prefix}fin", b"lots")
    tokens = {broker.inspector.change_token() for _ in range(3)}
    assert len(tokens) == 3, "unreadable: a change every time, so a poller looks"
    for delivery in broker.claim(None, 2, 30):
        assert broker.ack(delivery, Outcome.success(1))
    assert counts(broker) == {State.SUCCEEDED: 2}
    assert broker.inspector.change_token() == 2


def test_an_overwritten_sequence_stops_claims_without_losing_a_job(
    make_broker: Callable[..., RedisBroker], raw: Any
) -> None:
    clock = FakeClock(time.time())
    broker = make_broker(clock=clock)
    broker.enqueue([message(), message(eta=clock.now() + 1)])
    raw.set(f"{broker.prefix}seq", b"x")
    clock.advance(2)
    with pytest.raises(redis.ResponseError, match="seq holds 'x', not a count"):
        broker.claim(None, 2, 30)
    assert counts(broker) == {State.QUEUED: 2}
    raw.set(f"{broker.prefix}seq", 1000)
    assert len(broker.claim(None, 2, 30)) == 2


# -- inspection and the reply channel -------------------------------------------------------


@pytest.mark.parametrize(("field", "value", "reason"), DEFECTS)
def test_inspection_reads_a_corrupt_job(
    make_broker: Callable[..., RedisBroker], raw: Any, field: str, value: Any, reason: str
) -> None:
    broker = make_broker()
    sent = [message() for _ in range(3)]
    broker.enqueue(sent)
    bad = sent[1].id
    if callable(value):
        value = value(meta_blob(raw, broker, bad))
    corrupt(raw, broker, bad, field, value)
    job = broker.inspector.job(bad)
    assert isinstance(job, JobInfo) and job.id == bad and isinstance(job.state, State)
    states = broker.inspector.job_states([m.id for m in sent])
    expected = State.FAILED if field == "s" else State.QUEUED
    assert job.state is expected
    if field == "s" and value is None:  # the watcher then reads the job: failed, as above
        assert set(states) == {sent[0].id, sent[2].id}
    else:
        assert set(states) == {m.id for m in sent} and states[bad] is expected
    if job.error is not None:  # a field only the claim reads may read fine here
        assert "is corrupt" in job.error.message
    listed = broker.inspector.jobs()
    assert sorted(j.id for j in listed) == sorted(m.id for m in sent)


def test_inspection_of_a_failed_job_with_an_unreadable_error(
    make_broker: Callable[..., RedisBroker], raw: Any
) -> None:
    broker = make_broker()
    sent = message()
    broker.enqueue([sent])
    (delivery,) = broker.claim(None, 1, 30)
    broker.ack(delivery, Outcome.failure(KeyError("k")))
    job = broker.inspector.job(sent.id)
    assert job is not None and job.error is not None and job.error.type == "builtins.KeyError"
    assert job.error.args is None
    for text in (b"not json", b'{"type": 1}', b"[1, 2, 3]", b'["a", "b"]', b'["a","b","c",4]'):
        corrupt(raw, broker, sent.id, "err", text)
        job = broker.inspector.job(sent.id)
        assert job is not None and job.state is State.FAILED and job.error is not None
        assert "its err field" in job.error.message
    corrupt(raw, broker, sent.id, "err", b'["m.E", "text", "tb"]')  # before args were kept
    assert broker.inspector.job(sent.id).error == ErrorInfo("m.E", "text", "tb")  # type: ignore[union-attr]
    corrupt(raw, broker, sent.id, "dl", b"three")
    assert "its dl field" in broker.inspector.job(sent.id).error.message  # type: ignore[union-attr]


def test_error_args_are_stored_and_read_back(make_broker: Callable[..., RedisBroker]) -> None:
    broker = make_broker()
    sent = message()
    broker.enqueue([sent])
    (delivery,) = broker.claim(None, 1, 30)
    info = ErrorInfo("builtins.KeyError", "'k'", "Traceback ...", '["k"]')
    outcome = Outcome.failure(KeyError("k"))
    outcome.error_info = info
    broker.ack(delivery, outcome)
    job = broker.inspector.job(sent.id)
    assert job is not None and job.error == info


def test_a_producer_keeps_settling_its_other_handles(app: offload.App, raw: Any) -> None:
    """A corrupt record fails its own handle, with offload's error; the others settle."""
    task = app.task(double)
    handles = [task(i) for i in range(GOOD)]
    unknown_state, no_hash = handles[1].id, handles[4].id
    corrupt(raw, app.broker, unknown_state, "s", b"\xffweird")
    raw.delete(job_key(app.broker, no_hash))
    raw.rpush(job_key(app.broker, no_hash), b"a list")
    run = run_worker(app, [h.id for h in handles])
    for number, handle in enumerate(handles):
        if handle.id in (unknown_state, no_hash):
            with pytest.raises(MessageRejected):
                handle.result(timeout=WAIT)
        else:
            assert handle.result(timeout=WAIT) == 2 * number
    assert run.worker_alive and run.after == 42


def test_news_on_the_reply_channel_that_does_not_read_is_passed_over(
    make_broker: Callable[..., RedisBroker], raw: Any
) -> None:
    broker = make_broker()
    assert broker.wait_for_results(0.0) == []  # listening from now on
    sent = message()
    broker.enqueue([sent])
    channel = broker._reply_channel
    for junk in (b"", b"\xff\n", b"x y\nz", b"id succeeded 1 99\n", b"id failed 0 0\n[1]"):
        raw.publish(channel, junk)
    (delivery,) = broker.claim(None, 1, 30)
    broker.ack(delivery, Outcome(State.SUCCEEDED, payload=b"42"))
    news: list[Finished] = []
    deadline = time.monotonic() + WAIT
    while sent.id not in [n.id for n in news] and time.monotonic() < deadline:
        news += broker.wait_for_results(0.5)
    assert Finished(sent.id, State.SUCCEEDED, b"42", None) in news
    assert all(n.id in ("x", "id", sent.id) for n in news)
    assert all(n.state is None for n in news if n.id != sent.id), "only the id: read the record"


def test_a_queue_name_that_is_not_utf8_is_counted_and_listed(
    make_broker: Callable[..., RedisBroker], raw: Any
) -> None:
    broker = make_broker()
    sent = message()
    broker.enqueue([sent])
    (delivery,) = broker.claim(None, 1, 30)
    broker.ack(delivery, Outcome.failure(ValueError("x")))
    corrupt(raw, broker, sent.id, "q", b"\xff")
    raw.zrem(f"{broker.prefix}st:failed:default", sent.id)
    raw.zadd(f"{broker.prefix}st:failed:".encode() + b"\xff", {sent.id: 1})
    assert broker.inspector.retry(sent.id)  # now queued, in that queue
    assert broker.inspector.counts() == {"\\xff": {State.QUEUED: 1}}
    (job,) = broker.inspector.jobs()
    assert job.id == sent.id and job.queue == "\\xff"


# -- passwords ---------------------------------------------------------------------------------


def test_a_password_never_shows_in_a_repr_or_an_error() -> None:
    secret = "s3cr/et#pw"
    quoted = "s3cr%2Fet%23pw"
    broker = RedisBroker.from_url(f"redis://:{quoted}@127.0.0.1:1/0?socket_connect_timeout=0.2")
    broker.BACKOFF = (0.01, 0.01)
    try:
        with pytest.raises(BrokerUnavailable) as unreachable:
            broker.enqueue([message()])
        texts = [repr(broker), str(unreachable.value), repr(unreachable.value)]
        texts += [str(unreachable.value.__cause__)]
    finally:
        broker.close()
    for url in (
        f"redis://:{secret}@127.0.0.1:6379/0",  # not encoded: the URL breaks at the / and #
        f"redis://user:{secret}@127.0.0.1:port/0",
        f"redis://127.0.0.1:port/0?password={quoted}",
    ):
        with pytest.raises(ConfigurationError) as refused:
            RedisBroker.from_url(url)
        texts += [str(refused.value), repr(refused.value)]
    for text in texts:
        for piece in ("s3cr", "et#pw", quoted):
            assert piece not in text, text


# -- properties ---------------------------------------------------------------------------------

_VALUE = st.one_of(
    st.none(),
    st.binary(max_size=40),
    st.integers(),
    st.sampled_from([b"nan", b"inf", b"-1", b"1e3", b"0x10", b" 7 ", b"\xff", b"[]", b"null"]),
    st.lists(st.one_of(st.none(), st.integers(), st.text(), st.booleans()), max_size=7).map(
        lambda parts: json.dumps(parts).encode()
    ),
)


@settings(max_examples=300, deadline=None)
@given(
    job_id=st.binary(max_size=30),
    values=st.lists(_VALUE, min_size=scripts.CLAIMED - 2, max_size=scripts.CLAIMED - 2),
)
def test_any_claim_row_decodes_to_a_delivery(job_id: bytes, values: list[Any]) -> None:
    row = [job_id, 7, *values]
    delivery = rows.delivery(row, 100.0)
    assert isinstance(delivery, Delivery) and delivery.token == 7
    if delivery.defect is None:
        assert message_problem(delivery.message) is None
    else:
        assert isinstance(delivery.defect, str) and delivery.defect


_FIELDS = [b"s", b"q", b"a", b"p", b"m", b"js", b"eta", b"k", b"md", b"ttl", b"fin", b"err"]
_FIELDS += [b"dl", b"pl", b"res", b"r", b"t", b"lu", b"rt", b"bad"]


@settings(max_examples=300, deadline=None)
@given(fields=st.dictionaries(st.sampled_from(_FIELDS), st.binary(max_size=40) | _VALUE))
def test_any_hash_reads_as_a_job(fields: dict[bytes, Any]) -> None:
    fields = {name: value for name, value in fields.items() if isinstance(value, bytes)}
    job = rows.job_info("id", fields)
    assert isinstance(job, JobInfo) and isinstance(job.state, State)
    assert type(job.task) is str and type(job.queue) is str
    assert type(job.attempt) is int and type(job.priority) is int
    assert job.error is None or all(
        type(part) is str for part in (job.error.type, job.error.message, job.error.traceback)
    )
    if b"s" in fields:
        assert isinstance(rows.job_state(fields[b"s"]), State)


_NEWS = st.one_of(
    st.binary(max_size=60),
    st.tuples(
        st.sampled_from([b"id", b"", b"\xff", b"a b"]),
        st.sampled_from([b"succeeded", b"failed", b"nope", b""]),
        st.sampled_from([b"0", b"1", b"2"]),
        st.sampled_from([b"0", b"3", b"-1", b"99", b"x"]),
        st.binary(max_size=20),
    ).map(lambda p: b" ".join(p[:4]) + b"\n" + p[4]),
)


@settings(max_examples=300, deadline=None)
@given(data=_NEWS)
def test_any_news_reads_as_finished_or_nothing(data: bytes) -> None:
    done = rows.finished(data)
    assert done is None or (isinstance(done, Finished) and done.id)
    if done is not None and done.error is not None:
        assert isinstance(done.error, ErrorInfo) and type(done.error.message) is str


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    field=st.sampled_from([name.decode() for name in _FIELDS]),
    value=st.binary(max_size=30)
    | st.sampled_from([b"nan", b"inf", b"-inf", b"1e400", b"0x1", b"running", b"failed"]),
    lapse=st.booleans(),
)
def test_any_bytes_in_a_stored_field_fail_that_job_at_most(
    field: str, value: bytes, lapse: bool
) -> None:
    """Claimed (a delayed job, or a lapsed lease), acked as a worker does: nothing raises or
    is lost, and the two good jobs beside it run."""
    clock = FakeClock(time.time())
    broker = RedisBroker.from_url(
        require_redis(), clock=clock, namespace=f"test-{uuid.uuid4().hex}"
    )
    client = redis.Redis.from_url(require_redis())
    try:
        sent = [message(max_deliveries=3), message(eta=clock.now() + 1), message()]
        broker.enqueue(sent)
        bad = sent[1]  # delayed: the promotion at the top of a claim meets it first
        if lapse:
            broker.claim(None, 3, 30)
            bad = sent[2]  # its worker died: the lapsed-lease loop meets it first
        corrupt(client, broker, bad.id, field, value)
        clock.advance(31)
        deliveries = broker.claim(None, 3, 30)
        good = {m.id for m in sent if m is not bad}
        assert good <= {d.message.id for d in deliveries if d.defect is None}
        assert {d.message.id for d in deliveries} <= {m.id for m in sent}
        for delivery in deliveries:
            outcome = (
                Outcome.failure(MessageRejected(delivery.defect))
                if delivery.defect
                else Outcome.success(1)
            )
            assert broker.ack(delivery, outcome)
        # A stored TTL that reads as zero is a valid one: that job ran, and its ack
        # kept no success, as for any job sent with result_ttl=0.
        kept = [m for m in sent if not (m is bad and field == "ttl" and _reads_as_zero(value))]
        found = broker.inspector.counts()
        assert sum(n for per in found.values() for n in per.values()) == len(kept), found
        assert all(state.finished for per in found.values() for state in per), found
        for m in kept:
            assert broker.inspector.job(m.id) is not None
        assert len(broker.inspector.jobs()) == len(kept)
        assert len(broker.inspector.job_states([m.id for m in sent])) >= 2
    finally:
        broker.drop()
        broker.close()
        client.close()


def _reads_as_zero(value: bytes) -> bool:
    """Whether the broker reads ``value`` as a result TTL of zero (``float``, as rows.py)."""
    try:
        return float(value) == 0.0
    except ValueError:
        return False
