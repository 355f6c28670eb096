"""The Redis broker's fast paths keep every promise of the slow ones.

Issue 11, section 3: a lone enqueue takes a path of its own in ``ENQUEUE``,
a queue is listed in ``queues`` once a second rather than per call, the
link reads its socket itself, claims have a connection of their own, and a
thread blocked on ``handle.result()`` reads the result feed itself. Each
test here holds one of them to what the general path did.

Against the Redis test server (``OFFLOAD_TEST_REDIS_URL``), each test in a
namespace of its own, dropped after.
"""

from __future__ import annotations

import concurrent.futures
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

redis = pytest.importorskip("redis")

from offload import ResultTimeout, TaskCancelled  # noqa: E402
from offload._brokers._redis import RedisBroker, rows  # noqa: E402
from offload._brokers._redis.combine import Combiner  # noqa: E402
from offload._brokers._redis.feed import Subscription  # noqa: E402
from offload._brokers._redis.link import Link  # noqa: E402
from offload._handle import Handle  # noqa: E402
from offload._message import Message, Outcome, State, new_id  # noqa: E402
from offload._results import ResultWatcher  # noqa: E402
from offload._serializers import JsonSerializer  # noqa: E402
from servers import require_redis  # noqa: E402

SERIALIZER = JsonSerializer()


def message(**fields: Any) -> Message:
    fields.setdefault("payload", b"[[],{}]")
    fields.setdefault("created", time.time())
    return Message(new_id(), "tasks.work", (), {}, **fields)


# -- ENQUEUE: the lone message's path, and the queue listing ----------------------------


NOW = 1_790_000_000.123456


class _Fixed:
    """A clock that stays at ``NOW``: both brokers of a comparison see one time."""

    def now(self) -> float:
        return NOW

    def wait(self, waitable: Any, timeout: float | None) -> bool:
        return bool(waitable.wait(timeout))


@pytest.mark.parametrize(
    "fields",
    [
        {"queue": "mail", "priority": 3, "max_deliveries": 4, "result_ttl": 9.5},
        {},
        {"priority": -2, "eta": NOW - 5.25},  # due already: ready, ranked at its eta
        {"priority": 7, "eta": NOW + 60.5, "attempt": 2},  # delayed
        {"eta": NOW, "payload": None},  # due this very moment: ready
    ],
)
def test_a_lone_message_is_stored_as_a_batch_stores_it(
    make_broker: Callable[..., RedisBroker], raw: Any, fields: dict[str, Any]
) -> None:
    # ENQUEUE_ONE is handed what ENQUEUE works out in Lua (delayed or not, the
    # rank's due time) worked out in Python: the same job, the same indexes.
    alone, batched = make_broker(clock=_Fixed()), make_broker(clock=_Fixed())
    sent = message(**fields)
    twin = Message(sent.id, sent.task, (), {}, **{**fields, "payload": sent.payload})
    twin.created = sent.created
    alone.enqueue([sent])
    batched.enqueue([twin, message()])
    mine = raw.hgetall(f"{alone.prefix}job:{sent.id}")
    theirs = raw.hgetall(f"{batched.prefix}job:{sent.id}")
    assert set(mine) == set(theirs)
    assert {k: v for k, v in mine.items() if k not in (b"js", b"r")} == {
        k: v for k, v in theirs.items() if k not in (b"js", b"r")
    }
    queue = sent.queue
    assert raw.zcard(f"{alone.prefix}st:queued:{queue}") == 1
    if b"r" in theirs:  # ready: the same due time, then its own sequence, then the id
        assert mine[b"r"][:16] + mine[b"r"][29:] == theirs[b"r"][:16] + theirs[b"r"][29:]
        assert mine[b"r"][16:29] == b"%013d" % int(mine[b"js"])
        score = raw.zscore(f"{alone.prefix}ready:{queue}", mine[b"r"])
        assert score == raw.zscore(f"{batched.prefix}ready:{queue}", theirs[b"r"])
    else:
        assert raw.zscore(f"{alone.prefix}delayed", sent.id) == fields["eta"]
    assert raw.llen(f"{alone.prefix}wake:{queue}") == raw.llen(f"{alone.prefix}wake") == 1


def test_a_lone_message_with_a_stored_id_stores_nothing(
    make_broker: Callable[..., RedisBroker], raw: Any
) -> None:
    broker = make_broker()
    stored = message()
    broker.enqueue([stored])
    before = sorted(raw.scan_iter(match=f"{broker.prefix}*"))
    with pytest.raises(ValueError, match=stored.id):
        broker.enqueue([stored])
    assert sorted(raw.scan_iter(match=f"{broker.prefix}*")) == before


def test_a_queue_listing_deleted_behind_the_broker_comes_back(
    make_broker: Callable[..., RedisBroker], raw: Any
) -> None:
    broker = make_broker()
    broker.REGISTER_EVERY = 0.2
    broker.enqueue([message(queue="mail")])
    raw.delete(f"{broker.prefix}queues")  # evicted, say
    time.sleep(0.25)
    broker.enqueue([message(queue="mail")])
    assert raw.smembers(f"{broker.prefix}queues") == {b"mail"}
    assert len(broker.claim(None, 5, 30)) == 2, "a worker for all queues finds both"


def test_drop_forgets_which_queues_were_listed(make_broker: Callable[..., RedisBroker]) -> None:
    broker = make_broker()
    broker.enqueue([message(queue="mail")])
    broker.drop()
    broker.enqueue([message(queue="mail")])
    assert len(broker.claim(None, 5, 30)) == 1


def test_a_keyed_lone_message_still_dedupes(make_broker: Callable[..., RedisBroker]) -> None:
    broker = make_broker()
    first = message(key="user:1")
    assert broker.enqueue([first]) == [first.id]
    assert broker.enqueue([message(key="user:1")]) == [first.id]


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"payload": None},
        {"timeout": 2.5, "retries": 3},
        {"meta": {"trace": "ünï"}},
        {"created": 3},
        {"created": float("nan")},
    ],
)
def test_the_meta_field_is_what_the_json_encoder_writes(fields: dict[str, Any]) -> None:
    sent = message(**fields)
    sent.task = 'tâches."work"'
    expected = json.JSONEncoder(separators=(",", ":")).encode(
        [sent.task, sent.timeout, sent.retries, sent.created or 1.5, sent.meta or None,
         sent.payload is None]
    )  # fmt: skip
    assert rows.meta_blob(sent, 1.5) == expected


# -- the link, the combiner, the reply channel ------------------------------------------


def test_the_link_reads_error_replies_as_redis_py_exceptions(raw: Any) -> None:
    link = Link(raw.connection_pool)
    key = f"test-link-{uuid.uuid4().hex}"
    try:
        with pytest.raises(redis.exceptions.NoScriptError):
            link.call("EVALSHA", "0" * 40, 0)
        link.call("SET", key, "text")
        with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
            link.call("HGET", key, "field")
        assert link.call("GET", key) == b"text", "still in step after errors"
    finally:
        raw.delete(key)
        link.close()


def test_a_link_call_that_outlasts_the_socket_timeout_is_a_redis_timeout() -> None:
    client = redis.Redis.from_url(require_redis(), socket_timeout=0.2)
    link = Link(client.connection_pool)
    with pytest.raises(redis.TimeoutError):
        link.call("BLPOP", f"test-link-{uuid.uuid4().hex}", 2)
    assert link.call("PING") in (b"PONG", True), "the next call reconnects"
    link.close()
    client.close()


def test_a_combiner_answers_each_caller_alone() -> None:
    flushes: list[list[int]] = []
    gate = threading.Event()

    def flush(items: list[int]) -> list[int | BaseException]:
        flushes.append(items)
        gate.wait(5)
        return [ValueError(f"odd {n}") if n % 2 else n * 10 for n in items]

    combiner: Combiner[int, int] = Combiner(flush)
    answers: dict[int, Any] = {}

    def call(n: int) -> None:
        try:
            answers[n] = combiner.submit(n)
        except ValueError as error:
            answers[n] = str(error)

    threads = [threading.Thread(target=call, args=(n,)) for n in range(6)]
    threads[0].start()
    time.sleep(0.05)  # the first call flushes alone; the others queue behind it
    for thread in threads[1:]:
        thread.start()
    time.sleep(0.05)
    gate.set()
    for thread in threads:
        thread.join(5)
    assert answers == {0: 0, 1: "odd 1", 2: 20, 3: "odd 3", 4: 40, 5: "odd 5"}
    assert flushes[0] == [0] and sorted(flushes[1]) == [1, 2, 3, 4, 5]


def test_a_failed_flush_fails_every_caller_of_it_and_the_next_one_runs() -> None:
    calls = 0

    def flush(items: list[int]) -> list[int]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("cut")
        return items

    combiner: Combiner[int, int] = Combiner(flush)
    with pytest.raises(ConnectionError):
        combiner.submit(1)
    assert combiner.submit(2) == 2


@pytest.mark.parametrize("protocol", [2, 3])
def test_an_interrupt_ends_a_read_at_once_and_loses_nothing(raw: Any, protocol: int) -> None:
    client = redis.Redis.from_url(require_redis(), protocol=protocol)
    channel = f"test-feed-{uuid.uuid4().hex}"
    feed = Subscription(client.connection_pool, channel)
    feed.read(0.0)  # subscribed
    got: list[list[bytes]] = []
    started = time.monotonic()
    reader = threading.Thread(target=lambda: got.append(feed.read(10.0)))
    reader.start()
    time.sleep(0.1)
    feed.interrupt()
    reader.join(5)
    assert got == [[]] and time.monotonic() - started < 2
    raw.publish(channel, b"one")
    raw.publish(channel, b"two")
    deadline = time.monotonic() + 5
    news: list[bytes] = []
    while len(news) < 2 and time.monotonic() < deadline:
        news += feed.read(1.0)
    assert news == [b"one", b"two"]
    feed.close()
    client.close()


# -- a blocked result() reads the feed itself ---------------------------------------------


@pytest.fixture
def broker(make_broker: Callable[..., RedisBroker]) -> RedisBroker:
    return make_broker()


@pytest.fixture
def watcher(broker: RedisBroker) -> Iterator[ResultWatcher]:
    watcher = ResultWatcher(broker.inspector, SERIALIZER, "test", feed=broker)
    watcher.FEED_POLL = 30.0  # only the feed can settle a handle within a test's wait
    broker.wait_for_results(0.0)  # listening before the first enqueue
    yield watcher
    watcher.stop()


def watched(broker: RedisBroker, watcher: ResultWatcher) -> Handle[Any]:
    sent = message()
    broker.enqueue([sent])
    handle: Handle[Any] = Handle(sent.id, "tasks.work")
    watcher.watch(handle)
    return handle


def finish_all(broker: RedisBroker, values: dict[str, Any]) -> None:
    """Claim every queued job and succeed it with ``values[id]``, in claim order."""
    for delivery in broker.claim(None, len(values), 30):
        value = values[delivery.message.id]
        assert broker.ack(delivery, Outcome(State.SUCCEEDED, payload=SERIALIZER.encode(value)))


def settled_by(handle: Handle[Any]) -> list[str]:
    names: list[str] = []
    handle.add_done_callback(lambda _: names.append(threading.current_thread().name))
    return names


def test_the_thread_blocked_on_a_result_reads_it_itself(
    broker: RedisBroker, watcher: ResultWatcher
) -> None:
    for value in range(3):
        handle = watched(broker, watcher)
        names = settled_by(handle)
        timer = threading.Timer(0.1, finish_all, (broker, {handle.id: value}))
        timer.start()
        assert handle.result(timeout=5) == value
        timer.join()
        assert names == [threading.current_thread().name], "no hop through the watcher"


def test_many_threads_blocked_on_many_handles_each_get_their_own(
    broker: RedisBroker, watcher: ResultWatcher
) -> None:
    handles = [watched(broker, watcher) for _ in range(12)]
    with concurrent.futures.ThreadPoolExecutor(12) as pool:
        results = [pool.submit(handle.result, 10) for handle in handles]
        time.sleep(0.1)  # every thread blocked: one reads, the others wait
        finish_all(broker, {handle.id: n for n, handle in enumerate(handles)})
        assert [future.result(10) for future in results] == list(range(12))


def test_handles_nobody_blocks_on_settle_while_a_caller_reads(
    broker: RedisBroker, watcher: ResultWatcher
) -> None:
    blocked = watched(broker, watcher)
    others = [watched(broker, watcher) for _ in range(5)]
    reader = threading.Thread(target=lambda: blocked.result(timeout=10))
    reader.start()
    time.sleep(0.1)
    values = {handle.id: n for n, handle in enumerate(others)}
    for delivery in broker.claim(None, 6, 30):  # all but the blocked caller's own
        outcome = Outcome(
            State.SUCCEEDED, payload=SERIALIZER.encode(values.get(delivery.message.id))
        )
        if delivery.message.id != blocked.id:
            broker.ack(delivery, outcome)
        else:
            own = (delivery, outcome)
    done = list(concurrent.futures.as_completed(others, timeout=5))
    assert sorted(handle.result() for handle in done) == list(range(5))
    broker.ack(*own)
    reader.join(5)
    assert blocked.done()


def test_the_feed_goes_back_to_the_watcher_when_the_caller_leaves(
    broker: RedisBroker, watcher: ResultWatcher
) -> None:
    first, later = watched(broker, watcher), watched(broker, watcher)
    threading.Timer(0.1, finish_all, (broker, {first.id: 1, later.id: 2})).start()
    assert first.result(timeout=5) == 1
    assert next(concurrent.futures.as_completed([later], timeout=5)).result() == 2


def test_a_cancel_from_another_thread_ends_a_blocked_result_at_once(
    broker: RedisBroker, watcher: ResultWatcher
) -> None:
    handle = watched(broker, watcher)
    threading.Timer(0.2, handle.cancel).start()
    started = time.monotonic()
    with pytest.raises(TaskCancelled):
        handle.result(timeout=10)
    assert time.monotonic() - started < 2, "not at the next poll (30 s away)"


def test_a_handle_settled_directly_by_another_thread_ends_a_blocked_result_at_once(
    broker: RedisBroker, watcher: ResultWatcher
) -> None:
    # As an embedded worker's runner settles a handle of its own process: not
    # through the feed, so the caller reading the feed must be told.
    handle = watched(broker, watcher)
    threading.Timer(0.2, handle.set_result, (7,)).start()
    started = time.monotonic()
    assert handle.result(timeout=10) == 7
    assert time.monotonic() - started < 2, "not at the next poll (30 s away)"
    failed = watched(broker, watcher)
    threading.Timer(0.2, failed.set_exception, (ValueError("no"),)).start()
    with pytest.raises(ValueError, match="no"):
        failed.result(timeout=10)
    assert time.monotonic() - started < 4


def test_a_result_timeout_names_the_timeout_asked_for(
    broker: RedisBroker, watcher: ResultWatcher
) -> None:
    handle = watched(broker, watcher)
    started = time.monotonic()
    with pytest.raises(ResultTimeout, match=r"within 0\.3s"):
        handle.result(timeout=0.3)
    assert 0.25 < time.monotonic() - started < 2
    with pytest.raises(ResultTimeout, match=r"within 0\.1s"):
        handle.exception(timeout=0.1)


def test_repeated_timed_waits_leave_one_callback_on_the_handle(
    broker: RedisBroker, watcher: ResultWatcher
) -> None:
    handle = watched(broker, watcher)
    for _ in range(20):  # a caller polling with short timeouts, as loops of them do
        with pytest.raises(ResultTimeout):
            handle.result(timeout=0.01)
    callbacks = handle._done_callbacks  # type: ignore[attr-defined]  # Future's own list
    assert len(callbacks) <= 1, f"{len(callbacks)} callbacks kept: one per wait leaks"
    finish_all(broker, {handle.id: 7})
    assert handle.result(timeout=5) == 7
