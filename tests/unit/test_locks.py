"""``TokenLock``: a lock first, whatever it does to avoid convoys."""

from __future__ import annotations

import threading
import time

import pytest

from helpers import WAIT
from offload._locks import TokenLock


def test_it_excludes_threads_switched_out_inside_the_section() -> None:
    lock = TokenLock()
    counter = [0]

    def add() -> None:
        for _ in range(2000):
            with lock:
                value = counter[0]
                time.sleep(0)  # give up the GIL mid-section: another thread runs
                counter[0] = value + 1

    threads = [threading.Thread(target=add) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    assert counter[0] == 8000


def test_a_waiter_gets_it_when_the_holder_lets_go() -> None:
    lock = TokenLock()
    got = threading.Event()
    lock.acquire()

    def wait() -> None:
        with lock:
            got.set()

    waiter = threading.Thread(target=wait)
    waiter.start()
    assert not got.wait(0.2)
    lock.release()
    assert got.wait(WAIT)
    waiter.join(WAIT)
    assert lock.acquire(blocking=False)  # given back by the waiter's with block


def test_an_exception_in_the_section_gives_it_back() -> None:
    lock = TokenLock()
    with pytest.raises(ValueError), lock:
        raise ValueError("boom")
    assert lock.acquire(blocking=False)
    assert not lock.acquire(blocking=False)  # one token: taken once only


def test_acquire_without_blocking_and_with_a_timeout() -> None:
    lock = TokenLock()
    assert lock.acquire()
    assert not lock.acquire(blocking=False)
    before = time.monotonic()
    assert not lock.acquire(timeout=0.05)
    assert time.monotonic() - before >= 0.05
    lock.release()
    assert lock.acquire(blocking=False)


def test_it_serves_as_a_conditions_lock() -> None:
    lock = TokenLock()
    condition = threading.Condition(lock)  # type: ignore[arg-type]
    ready: list[int] = []

    def produce() -> None:
        time.sleep(0.05)
        with condition:
            ready.append(1)
            condition.notify_all()

    threading.Thread(target=produce).start()
    with condition:
        assert condition.wait_for(lambda: ready, timeout=WAIT)
    assert lock.acquire(blocking=False)  # wait() gave it back and took it again
