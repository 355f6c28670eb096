"""Group commit on the client, made lean for the Redis broker's hot paths.

``Combiner`` has the promise of ``_group_commit.Batcher``: calls that
threads make while a flush is in flight share the next flush, a lone call
flushes at once (no added latency), and every caller returns only once the
flush that holds its item has answered it, with its own answer or error.

It is a smaller machine, because on Redis a call is a round trip of some
20 µs and the batcher's own work was half as much again: a call that finds
no flush running (the common case for a producer) allocates nothing and
takes the mutex twice; one that has to wait gets a lock of its own and is
woken exactly once, with its answer or to lead the next flush.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from ..._locks import TokenLock

ItemT = TypeVar("ItemT")
ResultT = TypeVar("ResultT")

Flush = Callable[[list[ItemT]], Sequence["ResultT | BaseException"]]


class _Waiter(Generic[ItemT, ResultT]):
    __slots__ = ("answer", "item", "lead", "wake")

    def __init__(self, item: ItemT) -> None:
        self.item = item
        self.answer: ResultT | BaseException | None = None
        self.lead = False  # woken to flush the queue rather than with an answer
        self.wake = threading.Lock()
        self.wake.acquire()  # released with the answer, or to lead


class Combiner(Generic[ItemT, ResultT]):
    """Calls that meet share one ``flush(items)``, which answers one result per item, in order.

    ``flush`` may answer an exception for one item: that caller alone
    raises it. If ``flush`` raises, every caller of that flush does.
    """

    def __init__(self, flush: Flush[ItemT, ResultT]) -> None:
        self._flush = flush
        self._mutex = TokenLock()  # every thread's command takes it: see ``TokenLock``
        self._queue: list[_Waiter[ItemT, ResultT]] = []
        self._busy = False  # a flush runs, or its successor was chosen

    def submit(self, item: ItemT) -> ResultT:
        with self._mutex:
            if self._busy:
                waiter: _Waiter[ItemT, ResultT] | None = _Waiter(item)
                self._queue.append(waiter)  # type: ignore[arg-type]
            else:
                self._busy = True
                waiter = None
        if waiter is None:  # nobody flushing: this call flushes, alone
            try:
                answer = self._flush([item])[0]
            finally:
                self._hand_over()
        else:
            answer = self._wait(waiter)
        if isinstance(answer, BaseException):
            raise answer
        return answer

    def _wait(self, waiter: _Waiter[ItemT, ResultT]) -> ResultT | BaseException:
        try:
            waiter.wake.acquire()
        except BaseException:
            self._abandon(waiter)
            raise
        if waiter.lead:
            self._lead()
        return waiter.answer  # type: ignore[return-value]

    def _lead(self) -> None:
        """Flush everything queued (the leader's own item among it), then hand over."""
        with self._mutex:
            batch, self._queue = self._queue, []
        try:
            answers: Sequence[ResultT | BaseException] = self._flush([w.item for w in batch])
        except BaseException as error:  # noqa: BLE001 - every caller of the flush raises it
            answers = [error] * len(batch)
        for waiter, answer in zip(batch, answers, strict=True):
            waiter.answer = answer
            if not waiter.lead:
                waiter.wake.release()
        self._hand_over()

    def _hand_over(self) -> None:
        """Let the first caller queued meanwhile lead the next flush, or go idle."""
        with self._mutex:
            if not self._queue:
                self._busy = False
                return
            successor = self._queue[0]
            successor.lead = True
        successor.wake.release()

    def _abandon(self, waiter: _Waiter[ItemT, ResultT]) -> None:
        """The caller of ``waiter`` stopped waiting (a signal): never flush it, pass the lead on."""
        with self._mutex:
            if waiter not in self._queue:
                return  # in a flush already: its answer goes unread
            self._queue.remove(waiter)
            lead, waiter.lead = waiter.lead, False
        if lead:
            self._hand_over()
