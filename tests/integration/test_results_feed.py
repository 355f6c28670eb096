"""The result watcher on a broker that announces finished jobs (Redis): no polling needed.

The watcher's fallback poll is pushed out to 30 s in these tests, so a
result in hand within a few seconds can only have come through the feed.
Against the real server (``OFFLOAD_TEST_REDIS_URL``), in a namespace of
each test's own.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

redis = pytest.importorskip("redis")

from offload._brokers._base import Finished  # noqa: E402
from offload._brokers._redis import RedisBroker  # noqa: E402
from offload._handle import Handle  # noqa: E402
from offload._message import Message, Outcome, State, new_id  # noqa: E402
from offload._results import ResultWatcher  # noqa: E402
from offload._serializers import JsonSerializer  # noqa: E402
from servers import redis_broker, require_redis  # noqa: E402, F401 - `broker` fixture

SERIALIZER = JsonSerializer()


@pytest.fixture
def watcher(broker: RedisBroker) -> Iterator[ResultWatcher]:
    watcher = ResultWatcher(broker.inspector, SERIALIZER, "test", feed=broker)
    watcher.FEED_POLL = 30.0  # only the feed can settle a handle within a test's wait
    broker.wait_for_results(0.0)  # listening before the first enqueue: its ack announces it
    yield watcher
    watcher.stop()


def enqueue(broker: RedisBroker, **fields: Any) -> Message:
    fields.setdefault("payload", b"[[],{}]")
    message = Message(new_id(), "tasks.work", (), {}, created=time.time(), **fields)
    broker.enqueue([message])
    return message


def finish(broker: RedisBroker, value: Any) -> None:
    (delivery,) = broker.claim(None, 1, 30)
    outcome = Outcome(State.SUCCEEDED, payload=SERIALIZER.encode(value))
    assert broker.ack(delivery, outcome)


def fail(broker: RedisBroker, error: BaseException) -> None:
    (delivery,) = broker.claim(None, 1, 30)
    assert broker.ack(delivery, Outcome(State.FAILED, error=error))


def test_results_arrive_through_the_feed_one_after_another(
    broker: RedisBroker, watcher: ResultWatcher
) -> None:
    for value in range(5):
        handle: Handle[Any] = Handle(enqueue(broker).id, "tasks.work")
        watcher.watch(handle)
        finish(broker, value)
        assert handle.result(timeout=5) == value


def test_a_failure_arrives_through_the_feed_as_the_task_s_own_exception(
    broker: RedisBroker, watcher: ResultWatcher
) -> None:
    handle: Handle[Any] = Handle(enqueue(broker).id, "tasks.work")
    watcher.watch(handle)
    fail(broker, KeyError("no such user"))
    with pytest.raises(KeyError, match="no such user"):
        handle.result(timeout=5)


def test_the_news_of_a_job_carries_its_outcome(broker: RedisBroker) -> None:
    broker.wait_for_results(0.0)  # listening: the enqueues below ask for news
    done, failed = enqueue(broker), enqueue(broker)
    finish(broker, {"total": 3})
    fail(broker, KeyError("no such user"))
    news: list[Finished] = []
    deadline = time.monotonic() + 5
    while len(news) < 2 and time.monotonic() < deadline:
        news += broker.wait_for_results(0.5)
    by_id = {item.id: item for item in news}
    assert by_id[done.id] == Finished(done.id, State.SUCCEEDED, SERIALIZER.encode({"total": 3}))
    assert by_id[failed.id].state is State.FAILED
    assert by_id[failed.id].result is None
    assert by_id[failed.id].error is not None
    assert by_id[failed.id].error.message == "'no such user'"


def test_a_job_finished_before_its_handle_was_watched_is_settled_at_once(
    broker: RedisBroker, watcher: ResultWatcher
) -> None:
    first: Handle[Any] = Handle(enqueue(broker).id, "tasks.work")
    watcher.watch(first)  # starts the watcher, which now listens
    finish(broker, "first")
    assert first.result(timeout=5) == "first"
    early = enqueue(broker)
    finish(broker, "early")
    time.sleep(0.3)  # the announcement has come and gone: nobody watched it yet
    handle: Handle[Any] = Handle(early.id, "tasks.work")
    watcher.watch(handle)
    assert handle.result(timeout=5) == "early"


def test_jobs_carry_no_reply_channel_while_nobody_listens(broker: RedisBroker) -> None:
    client = redis.Redis.from_url(require_redis())
    quiet = enqueue(broker)
    broker.wait_for_results(0.0)
    heard = enqueue(broker)
    broker.stop_listening()
    quiet_again = enqueue(broker)
    replies = [client.hget(f"{broker.prefix}job:{m.id}", "rt") for m in (quiet, heard, quiet_again)]
    assert [reply is not None for reply in replies] == [False, True, False]
    client.close()


def test_a_caller_blocked_on_a_job_whose_news_never_came_looks_it_up(
    broker: RedisBroker, watcher: ResultWatcher, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The watcher's own poll is rare while callers read the feed: the caller
    # looks its job up itself when no news of it came for a FEED_POLL.
    monkeypatch.setattr(watcher, "_poll", lambda: 0)  # only the caller can settle it now
    watcher.FEED_POLL = 0.05
    broker.stop_listening()
    unannounced = enqueue(broker)  # no reply channel: its ack publishes nothing
    broker.wait_for_results(0.0)
    finish(broker, "looked up")
    handle: Handle[Any] = Handle(unannounced.id, "tasks.work")
    watcher.watch(handle)
    assert handle.result(timeout=5) == "looked up"
