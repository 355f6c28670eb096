"""A PostgreSQL worker's wait finds what no notification told it of.

``wait_for_messages`` listens a moment first, then looks for the next due
job (on its LISTEN connection, or on the broker's own when another thread
reads that one): a job committed before the wait listened, or one whose eta
comes, ends the wait without any notification.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from offload._brokers._postgres import PostgresBroker
from offload._message import Message, new_id

WAIT = 30.0  # far longer than any of these waits may take


def message(**fields: Any) -> Message:
    return Message(new_id(), "tasks.work", (), {}, payload=b"[]", **fields)


def waited(broker: PostgresBroker, timeout: float = WAIT) -> float:
    started = time.monotonic()
    broker.wait_for_messages(timeout)
    return time.monotonic() - started


def test_a_job_enqueued_before_the_wait_listened_ends_it(
    make_broker: Callable[..., PostgresBroker],
) -> None:
    worker, producer = make_broker(), make_broker()
    producer.enqueue([message()])  # notified before the worker listens: it hears nothing
    assert waited(worker) < WAIT / 2, "the look found the queued job"


def test_a_job_whose_eta_comes_ends_the_wait(broker: PostgresBroker) -> None:
    broker.wait_for_messages(0.01)  # listening, so the enqueue below is heard at once
    broker.enqueue([message(eta=time.time() + 0.5)])
    broker.wait_for_messages(0.01)  # the notification of that enqueue, read
    assert waited(broker) < WAIT / 2, "woke at the eta"
    assert broker.claim(None, 1, 30), "due by then"


def test_a_second_waiter_looks_on_the_brokers_connection(
    make_broker: Callable[..., PostgresBroker],
) -> None:
    worker, producer = make_broker(), make_broker()
    producer.enqueue([message(eta=time.time() + 0.5)])  # before the worker listens
    first = threading.Thread(target=worker.wait_for_messages, args=(WAIT,), daemon=True)
    first.start()  # reads the LISTEN connection; no notification comes to either
    time.sleep(0.05)
    try:
        assert waited(worker) < WAIT / 2, "its own look found the eta"
    finally:
        worker.interrupt()
        first.join(WAIT)
