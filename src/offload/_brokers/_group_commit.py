"""Group commit on the client: calls from threads that meet share one write.

A broker's acks and claims come from a worker's many threads at once. Each
write has a fixed cost (a commit and the database's write lock for SQLite,
a round trip for PostgreSQL and Redis) that is then paid per batch rather
than per call. Every caller still returns only once its own item has been
written, with its own answer: batching weakens no guarantee.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar, cast

from .._locks import TokenLock

ItemT = TypeVar("ItemT")
ResultT = TypeVar("ResultT")


class _Slot(Generic[ItemT, ResultT]):
    __slots__ = ("error", "item", "lead", "result", "wake")

    def __init__(self, item: ItemT) -> None:
        self.item = item
        self.result: ResultT | None = None
        self.error: BaseException | None = None
        self.lead = False  # woken to flush the queue rather than with an answer
        self.wake: threading.Lock | None = None  # held while its caller waits


class Batcher(Generic[ItemT, ResultT]):
    """Group commit on the client: calls that arrive while a flush runs share the next one.

    A lone call flushes at once (no added latency); under load, N threads
    acking together cost one statement and one commit instead of N. Every
    call returns only after the flush that holds its item has committed,
    so batching weakens nothing: the caller still hears ``True`` only for
    what is stored. ``flush(items)`` answers one result per item, in order.

    ``flush`` may answer an exception for one item: that caller alone
    raises it. If ``flush`` raises, every caller of the batch does, unless
    ``isolate(error)`` says the error may be one item's own doing (a value
    the database refuses): then each item is flushed again alone, and only
    the one at fault fails. ``isolate`` suits a flush that writes all or
    nothing, so that a failed flush left nothing behind to write twice.

    A flush wakes only the callers it answered and the one that flushes
    next: waking every waiter (a condition's ``notify_all``) would have
    them all fight for the GIL while the next flush holds the database.
    A flush that had to wait (for a lock) can take in the calls queued
    meanwhile with ``more()``, and then answers those too, after its items.

    ``returns(answer)``: whether an answer sends its caller straight back
    (a worker's ack that claimed the next job acks that one soon). A flush
    then waits for the callers the last one sent back, for as long as that
    flush took at most: a lone caller back first would else flush alone
    while the others queue behind it, and every second flush would carry
    one item (a worker of no-op tasks paid two commits per round of its
    threads). Waiting that long costs the others nothing (they would have
    waited for its flush), and a caller that comes back later finds no
    wait at all (a task that ran longer).
    """

    GATHER_MAX = 0.005  # seconds: however long the last flush took

    def __init__(
        self,
        flush: Callable[[list[ItemT]], Sequence[ResultT | BaseException]],
        *,
        isolate: Callable[[Exception], bool] | None = None,
        returns: Callable[[ResultT], bool] | None = None,
    ) -> None:
        self._flush = flush
        self._isolate = isolate
        self._returns = returns
        self._expected = 0  # callers the last flush sent back (``returns``)
        self._gather_until = 0.0  # time.monotonic(): no waiting for them after this
        self._gathered = threading.Event()  # set once the expected callers are queued
        self._alone = False  # flushing the items of a failed batch one by one
        self._mutex = TokenLock()  # every thread's write takes it: see ``TokenLock``
        self._queue: list[_Slot[ItemT, ResultT]] = []
        self._batch: list[_Slot[ItemT, ResultT]] = []  # what the running flush answers
        self._busy = False  # a flush runs, or its successor was chosen

    def more(self) -> list[ItemT]:
        """Inside ``flush``: the calls queued since it began, now part of its batch."""
        if self._alone:  # a retry of one item stays one item
            return []
        with self._mutex:
            extra, self._queue = self._queue, []
            self._batch += extra
        return [slot.item for slot in extra]

    def submit(self, item: ItemT) -> ResultT:
        slot: _Slot[ItemT, ResultT] = _Slot(item)
        with self._mutex:
            self._queue.append(slot)
            if self._busy:
                slot.wake = threading.Lock()
                slot.wake.acquire()
                if len(self._queue) == self._expected:
                    self._gathered.set()
            else:
                self._busy = True
                slot.lead = True
        if slot.wake is not None:
            try:
                slot.wake.acquire()  # released with the answer, or to flush next
            except BaseException:
                self._abandon(slot)
                raise
        if slot.lead:
            try:
                self._gather()
            except BaseException:  # a signal while it waited: as for a queued caller
                self._abandon(slot)
                raise
            self._lead()
        if slot.error is not None:
            raise slot.error
        return slot.result  # type: ignore[return-value]

    def _lead(self) -> None:
        """Flush everything queued, then hand over to the first caller queued since."""
        with self._mutex:
            self._batch, self._queue = self._queue, []
            items = [slot.item for slot in self._batch]
        started = time.monotonic()
        try:
            results = self._flush(items)
        except BaseException as error:  # noqa: BLE001 - every caller of the batch re-raises it
            if len(self._batch) > 1 and self._isolating(error):
                self._flush_alone()
            else:
                for slot in self._batch:
                    slot.error = error
        else:
            for slot, result in zip(self._batch, results, strict=True):
                if isinstance(result, BaseException):
                    slot.error = result
                else:
                    slot.result = result
        batch, self._batch = self._batch, []
        self._expect(batch, started)
        for slot in batch:
            slot.lead = False
            if slot.wake is not None and slot.wake.locked():
                slot.wake.release()
        self._hand_over()

    def _gather(self) -> None:
        """Wait (a flush time at most) for the callers the last flush sent back."""
        if self._expected <= 1:
            return
        with self._mutex:
            wait = self._gather_until - time.monotonic()
            if len(self._queue) >= self._expected or wait <= 0:
                return
            self._gathered.clear()
        self._gathered.wait(wait)

    def _expect(self, batch: list[_Slot[ItemT, ResultT]], started: float) -> None:
        """Note the callers ``batch``'s answers send back, and until when to wait for them."""
        returns = self._returns
        if returns is None:
            return
        ended = time.monotonic()
        self._gather_until = ended + min(ended - started, self.GATHER_MAX)
        self._expected = sum(
            1 for slot in batch if slot.error is None and returns(cast("ResultT", slot.result))
        )

    def _isolating(self, error: BaseException) -> bool:
        if self._isolate is None or not isinstance(error, Exception):
            return False
        try:
            return self._isolate(error)
        except Exception:  # noqa: BLE001 - a failing predicate: no retries
            return False

    def _flush_alone(self) -> None:
        """After a failed batch: each item flushed on its own, answered on its own."""
        self._alone = True
        try:
            for slot in self._batch:
                try:
                    (result,) = self._flush([slot.item])
                except BaseException as error:  # noqa: BLE001 - this caller's own error
                    slot.error = error
                    continue
                if isinstance(result, BaseException):
                    slot.error = result
                else:
                    slot.result = result
        finally:
            self._alone = False

    def _hand_over(self) -> None:
        with self._mutex:
            if not self._queue:
                self._busy = False
                return
            successor = self._queue[0]
            successor.lead = True
        assert successor.wake is not None  # queued while busy: it waits
        successor.wake.release()

    def _abandon(self, slot: _Slot[ItemT, ResultT]) -> None:
        """The caller of ``slot`` stopped waiting (a signal): never flush it, pass the lead on."""
        with self._mutex:
            if slot in self._queue:
                self._queue.remove(slot)
            lead, slot.lead = slot.lead, False
        if lead:
            self._hand_over()
