"""Group commit: the threads of one process share write transactions, each answered alone.

The Batcher (``_brokers/_group_commit.py``) is what the SQLite, PostgreSQL
and Redis brokers use; here it is driven directly (to force calls into one flush) and through a real
SQLite broker, where acks and claims that meet share one transaction.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from offload._brokers import SqliteBroker
from offload._brokers._group_commit import Batcher
from offload._message import Message, Outcome, State, new_id


def message(**fields: Any) -> Message:
    fields.setdefault("payload", b"[]")
    return Message(new_id(), "tasks.work", (), {}, **fields)


def wait_for(condition: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.001)


class Blocking:
    """A flush that records its batches and holds the first until released."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.entered = threading.Event()
        self.release = threading.Event()

    def __call__(self, items: list[int]) -> list[int]:
        self.batches.append(items)
        self.entered.set()
        assert self.release.wait(5)
        if -1 in items:
            raise RuntimeError("this batch failed")
        return [item * 10 for item in items]


def submit_in_thread(
    batcher: Batcher[int, int], item: int, answers: dict[int, Any]
) -> threading.Thread:
    def call() -> None:
        try:
            answers[item] = batcher.submit(item)
        except (RuntimeError, ValueError) as error:
            answers[item] = error

    thread = threading.Thread(target=call)
    thread.start()
    return thread


def test_calls_that_arrive_during_a_flush_share_the_next_one() -> None:
    flush = Blocking()
    batcher: Batcher[int, int] = Batcher(flush)
    answers: dict[int, Any] = {}
    first = submit_in_thread(batcher, 1, answers)
    assert flush.entered.wait(5)
    waiting = [submit_in_thread(batcher, item, answers) for item in (2, 3, 4)]
    wait_for(lambda: len(batcher._queue) == 3)
    flush.release.set()
    for thread in [first, *waiting]:
        thread.join(5)
    assert flush.batches == [[1], [2, 3, 4]]
    assert answers == {1: 10, 2: 20, 3: 30, 4: 40}, "each caller hears its own answer"


def test_a_failed_flush_fails_every_call_of_its_batch_and_only_those() -> None:
    flush = Blocking()
    batcher: Batcher[int, int] = Batcher(flush)
    answers: dict[int, Any] = {}
    first = submit_in_thread(batcher, 1, answers)
    assert flush.entered.wait(5)
    failing = [submit_in_thread(batcher, item, answers) for item in (-1, 2)]
    wait_for(lambda: len(batcher._queue) == 2)
    flush.release.set()
    for thread in [first, *failing]:
        thread.join(5)
    assert answers[1] == 10
    assert isinstance(answers[-1], RuntimeError) and isinstance(answers[2], RuntimeError)
    assert batcher.submit(5) == 50, "the batcher carries on after a failure"


def test_a_flush_takes_in_the_calls_queued_while_it_waited() -> None:
    entered, release = threading.Event(), threading.Event()
    batches: list[list[int]] = []

    def flush(items: list[int]) -> list[int]:
        entered.set()
        assert release.wait(5)  # a lock held by another process, say
        items = items + batcher.more()
        batches.append(items)
        return [item * 10 for item in items]

    batcher: Batcher[int, int] = Batcher(flush)
    answers: dict[int, Any] = {}
    first = submit_in_thread(batcher, 1, answers)
    assert entered.wait(5)
    late = [submit_in_thread(batcher, item, answers) for item in (2, 3)]
    wait_for(lambda: len(batcher._queue) == 2)
    release.set()
    for thread in [first, *late]:
        thread.join(5)
    assert batches == [[1, 2, 3]], "one flush, no second one"
    assert answers == {1: 10, 2: 20, 3: 30}


def test_an_error_answered_for_one_item_is_raised_to_its_caller_alone() -> None:
    flush = Blocking()

    def answer_each(items: list[int]) -> list[int | BaseException]:
        return [
            ValueError(f"item {item} refused") if item == 3 else answer
            for item, answer in zip(items, flush(items), strict=True)
        ]

    batcher: Batcher[int, int] = Batcher(answer_each)
    answers: dict[int, Any] = {}
    first = submit_in_thread(batcher, 1, answers)
    assert flush.entered.wait(5)
    together = [submit_in_thread(batcher, item, answers) for item in (2, 3, 4)]
    wait_for(lambda: len(batcher._queue) == 3)
    flush.release.set()
    for thread in [first, *together]:
        thread.join(5)
    assert flush.batches == [[1], [2, 3, 4]]
    assert isinstance(answers.pop(3), ValueError)
    assert answers == {1: 10, 2: 20, 4: 40}


def test_a_lone_call_flushes_at_once() -> None:
    batcher: Batcher[int, int] = Batcher(lambda items: [item + 1 for item in items])
    assert [batcher.submit(item) for item in range(3)] == [1, 2, 3]


def flush_a_pair(batcher: Batcher[int, int], first: Blocking, answers: dict[int, Any]) -> None:
    """1 is held in its flush while 2 and 3 queue behind it, then let go: the flush of
    [2, 3] (slow in these tests) sends both back."""
    held = submit_in_thread(batcher, 1, answers)
    assert first.entered.wait(5)
    pair = [submit_in_thread(batcher, item, answers) for item in (2, 3)]
    wait_for(lambda: len(batcher._queue) == 2)
    first.release.set()
    for thread in [held, *pair]:
        thread.join(5)


def test_the_callers_a_flush_sent_back_are_waited_for_and_share_the_next_one() -> None:
    # A worker's threads: an answer with work (here: under 100) brings its
    # caller back soon, and the first one back waits for the others (for as
    # long as the flush that sent them back took) instead of flushing alone.
    first = Blocking()
    batches: list[list[int]] = []

    def flush(items: list[int]) -> list[int]:
        if items == [1]:
            return first(items)  # held: 2 and 3 meet behind it
        batches.append(items)
        if 2 in items:
            time.sleep(0.5)  # a slow flush: its callers come back within as long
        return [item * 10 for item in items]

    batcher: Batcher[int, int] = Batcher(flush, returns=lambda answer: answer < 100)
    batcher.GATHER_MAX = 60.0
    answers: dict[int, Any] = {}
    flush_a_pair(batcher, first, answers)
    back = [submit_in_thread(batcher, item, answers) for item in (4, 5)]
    for thread in back:
        thread.join(5)
    assert [sorted(batch) for batch in batches] == [[2, 3], [4, 5]], "no flush of one alone"
    assert answers == {1: 10, 2: 20, 3: 30, 4: 40, 5: 50}


def test_a_caller_interrupted_while_it_waits_for_the_others_hands_the_lead_on() -> None:
    first = Blocking()
    batches: list[list[int]] = []

    def flush(items: list[int]) -> list[int]:
        if items == [1]:
            return first(items)
        batches.append(items)
        if 2 in items:
            time.sleep(0.5)  # opens a wait of as long for the callers it sends back
        return [item * 10 for item in items]

    class Interrupted(threading.Event):
        signals = 1

        def wait(self, timeout: float | None = None) -> bool:
            if self.signals:
                self.signals -= 1
                raise KeyboardInterrupt  # a signal, as the main thread may get one
            return super().wait(timeout)

    batcher: Batcher[int, int] = Batcher(flush, returns=lambda answer: True)
    batcher.GATHER_MAX = 60.0
    answers: dict[int, Any] = {}
    flush_a_pair(batcher, first, answers)
    batcher._gathered = Interrupted()
    interrupted: list[BaseException] = []

    def call() -> None:
        try:
            batcher.submit(4)
        except KeyboardInterrupt as error:
            interrupted.append(error)

    thread = threading.Thread(target=call)
    thread.start()
    thread.join(5)
    assert interrupted, "the signal reaches its caller"
    later = submit_in_thread(batcher, 5, answers)
    later.join(5)
    assert not later.is_alive(), "the next caller is not left waiting for a lead that never comes"
    assert answers[5] == 50 and batches[-1] == [5], "the interrupted call was not flushed"


@pytest.fixture
def broker(tmp_path: Path) -> Any:
    broker = SqliteBroker(tmp_path / "offload.db")
    yield broker
    broker.close()


def test_acks_and_claims_that_meet_share_a_transaction_and_stay_fenced(
    broker: SqliteBroker,
) -> None:
    first, second = message(), message()
    broker.enqueue([first, second, message()])
    one, two = broker.claim(None, 2, 30)
    answers: dict[str, Any] = {}

    def call(name: str, work: Any) -> threading.Thread:
        thread = threading.Thread(target=lambda: answers.__setitem__(name, work()))
        thread.start()
        return thread

    # Hold the connection's lock: the first call to flush waits for it, the
    # others queue behind it, and all of them go in the next transaction.
    with broker._lock:
        threads = [call("leader", lambda: broker.ack(one, Outcome(State.SUCCEEDED)))]
        wait_for(lambda: broker._writes._busy)
        threads += [
            call("ack", lambda: broker.ack(two, Outcome(State.SUCCEEDED, payload=b"2"))),
            call("again", lambda: broker.ack(two, Outcome(State.FAILED))),
            call("claim", lambda: broker.claim(None, 5, 30)),
        ]
        wait_for(lambda: len(broker._writes._queue) == 3)
    for thread in threads:
        thread.join(5)
    assert answers["leader"] is True
    assert sorted([answers["ack"], answers["again"]]) == [False, True], "one ack of two counts"
    assert len(answers["claim"]) == 1
    job = broker.inspector.job(two.message.id)
    assert job is not None and job.state in (State.SUCCEEDED, State.FAILED)


def test_with_isolate_a_failed_batch_is_flushed_again_item_by_item() -> None:
    flush = Blocking()
    batcher: Batcher[int, int] = Batcher(flush, isolate=lambda error: True)
    answers: dict[int, Any] = {}
    first = submit_in_thread(batcher, 1, answers)
    assert flush.entered.wait(5)
    together = [submit_in_thread(batcher, item, answers) for item in (2, -1, 3)]
    wait_for(lambda: len(batcher._queue) == 3)
    flush.release.set()
    for thread in [first, *together]:
        thread.join(5)
    assert flush.batches == [[1], [2, -1, 3], [2], [-1], [3]]
    assert isinstance(answers.pop(-1), RuntimeError), "the item at fault fails"
    assert answers == {1: 10, 2: 20, 3: 30}, "the items it met do not"


def test_isolate_leaves_errors_it_does_not_choose_to_every_caller() -> None:
    flush = Blocking()
    batcher: Batcher[int, int] = Batcher(flush, isolate=lambda error: False)
    answers: dict[int, Any] = {}
    first = submit_in_thread(batcher, 1, answers)
    assert flush.entered.wait(5)
    together = [submit_in_thread(batcher, item, answers) for item in (2, -1)]
    wait_for(lambda: len(batcher._queue) == 2)
    flush.release.set()
    for thread in [first, *together]:
        thread.join(5)
    assert flush.batches == [[1], [2, -1]], "no second try"
    assert isinstance(answers[2], RuntimeError) and isinstance(answers[-1], RuntimeError)


def test_a_flush_item_by_item_takes_in_nothing_more() -> None:
    batches: list[list[int]] = []
    entered, release = threading.Event(), threading.Event()

    def flush(items: list[int]) -> list[int]:
        if not batches:
            entered.set()
            assert release.wait(5)
        items = items + batcher.more()
        batches.append(items)
        if len(items) > 1 and -1 in items:
            raise ValueError("one of these is bad")
        return [item * 10 for item in items]

    batcher: Batcher[int, int] = Batcher(flush, isolate=lambda error: True)
    answers: dict[int, Any] = {}
    first = submit_in_thread(batcher, 1, answers)
    assert entered.wait(5)
    late = [submit_in_thread(batcher, item, answers) for item in (-1, 2)]
    wait_for(lambda: len(batcher._queue) == 2)
    release.set()
    for thread in [first, *late]:
        thread.join(5)
    assert batches == [[1, -1, 2], [1], [-1], [2]]
    assert answers == {1: 10, -1: -10, 2: 20}


def test_an_outcome_the_database_refuses_fails_its_own_ack_and_no_other(
    broker: SqliteBroker,
) -> None:
    jobs = [message() for _ in range(4)]
    broker.enqueue(jobs)
    deliveries = broker.claim(None, 4, 30)
    bad = deliveries[1]
    answers: dict[str, Any] = {}

    def ack(delivery: Any, outcome: Outcome) -> threading.Thread:
        def run() -> None:
            try:
                answers[delivery.message.id] = broker.ack(delivery, outcome)
            except Exception as error:
                answers[delivery.message.id] = error

        thread = threading.Thread(target=run)
        thread.start()
        return thread

    unstorable = Outcome(State.SUCCEEDED, payload="\udcff")  # type: ignore[arg-type]
    with broker._lock:  # every ack queues: they meet in one group commit
        threads = [ack(deliveries[0], Outcome(State.SUCCEEDED, payload=b"0"))]
        wait_for(lambda: broker._writes._busy)
        threads += [
            ack(bad, unstorable),
            ack(deliveries[2], Outcome(State.SUCCEEDED, payload=b"2")),
            ack(deliveries[3], Outcome(State.FAILED)),
        ]
        wait_for(lambda: len(broker._writes._queue) == 3)
    for thread in threads:
        thread.join(5)
    assert isinstance(answers.pop(bad.message.id), UnicodeEncodeError)
    assert answers == {d.message.id: True for d in deliveries if d is not bad}
    states = broker.inspector.job_states([m.id for m in jobs])
    assert [states[m.id] for m in jobs] == [
        State.SUCCEEDED,
        State.RUNNING,  # its lease will lapse: another worker runs it again
        State.SUCCEEDED,
        State.FAILED,
    ]
    assert broker.ack(bad, Outcome(State.SUCCEEDED, payload=b"1")), "still its delivery"
