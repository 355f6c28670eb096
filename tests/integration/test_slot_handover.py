"""A saturated in-process worker: each finished call passes its slot to the next.

The thread that frees a slot claims the next message itself and keeps the
slot for it, without freeing and taking it again. What must hold: no more
calls run at once than there are slots, no more leases are held than
slots, every call runs once, and no slot is lost or counted twice (the
pool still runs exactly that many at once afterwards).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import offload
from helpers import WAIT, wait_until


class Seen:
    """Most calls running at once, and most leases the broker held meanwhile."""

    def __init__(self, app: offload.App) -> None:
        self._broker = app.broker
        self.lock = threading.Lock()
        self.now = self.most = self.most_leased = 0
        self.ran: list[int] = []

    def __call__(self, i: int, seconds: float) -> int:
        with self.lock:
            self.now += 1
            self.most = max(self.most, self.now)
            self.most_leased = max(self.most_leased, len(self._broker._inflight))  # type: ignore[attr-defined]
        time.sleep(seconds)
        with self.lock:
            self.now -= 1
            self.ran.append(i)
        return i


def test_a_saturated_pool_never_runs_or_leases_more_than_its_slots(
    make_app: Callable[..., offload.App],
) -> None:
    app = make_app(threads=3)
    seen = Seen(app)
    work = app.task(seen)
    handles = [work(i, 0.0005 * (i % 4)) for i in range(600)]
    assert [handle.result(WAIT) for handle in handles] == list(range(600))
    assert sorted(seen.ran) == list(range(600))  # each once
    assert seen.most == 3
    assert seen.most_leased <= 3

    # No slot lost or doubled by 600 hand-overs: three run at once again, never four.
    seen.most = 0
    again = [work(i, 0.05) for i in range(9)]
    assert [handle.result(WAIT) for handle in again] == list(range(9))
    assert seen.most == 3


def test_a_pool_shrunk_while_saturated_stops_passing_slots_on(
    make_app: Callable[..., offload.App],
) -> None:
    app = make_app(threads=4)
    seen = Seen(app)
    work = app.task(seen)
    handles = [work(i, 0.01) for i in range(200)]
    wait_until(lambda: len(seen.ran) >= 20)
    app.resize("thread", 1)
    wait_until(lambda: seen.now <= 1)  # the slots above the new size are given up
    seen.most = 0
    assert [handle.result(WAIT) for handle in handles] == list(range(200))
    assert seen.most == 1
