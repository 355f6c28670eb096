"""``YieldingLock``: a lock first, whatever it does to avoid convoys."""

from __future__ import annotations

import threading
import time

from helpers import WAIT
from offload._locks import YIELD_FOR, YieldingLock


def test_it_excludes_threads_switched_out_inside_the_section() -> None:
    lock = YieldingLock()
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


def test_a_waiter_blocks_rather_than_spins_while_the_holder_is_busy() -> None:
    lock = YieldingLock()
    got = threading.Event()
    cpu: list[float] = []
    lock.acquire()

    def wait() -> None:
        start = time.thread_time()
        with lock:
            cpu.append(time.thread_time() - start)
            got.set()

    waiter = threading.Thread(target=wait)
    waiter.start()
    time.sleep(0.5)
    assert not got.is_set()
    lock.release()
    assert got.wait(WAIT)
    waiter.join(WAIT)
    # It yields for YIELD_FOR, then blocks: a fraction of the 0.5 s of CPU a spin would burn.
    assert cpu[0] < 0.1 + 10 * YIELD_FOR


def test_acquire_without_blocking_and_with_a_timeout() -> None:
    lock = YieldingLock()
    assert lock.acquire()
    assert not lock.acquire(blocking=False)
    before = time.monotonic()
    assert not lock.acquire(timeout=0.05)
    assert time.monotonic() - before >= 0.05
    lock.release()
    assert lock.acquire(blocking=False)
    lock.release()


def test_reentrant_for_the_thread_that_holds_it_only() -> None:
    lock = YieldingLock(reentrant=True)
    other: list[bool] = []
    with lock, lock:
        thread = threading.Thread(target=lambda: other.append(lock.acquire(timeout=0.01)))
        thread.start()
        thread.join(WAIT)
    assert other == [False]
    assert lock.acquire(blocking=False)  # released as often as taken
    lock.release()


def test_it_serves_as_a_conditions_lock() -> None:
    condition = threading.Condition(YieldingLock())  # type: ignore[arg-type]
    ready: list[int] = []

    def produce() -> None:
        time.sleep(0.05)
        with condition:
            ready.append(1)
            condition.notify_all()

    threading.Thread(target=produce).start()
    with condition:
        assert condition.wait_for(lambda: ready, timeout=WAIT)
