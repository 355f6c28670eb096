"""The capabilities a worker's claim loop uses when its broker has them.

``Waker``: block until something may be claimable, instead of polling.
``AckAndClaim``: a finished call's outcome and its successor's claim at once.
``WaitAndClaim``: the wait and the claim after it in one round trip. Each
is checked with ``isinstance`` (``runtime_checkable``); the rest of the
contract is ``_base``'s.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from .._message import Delivery, Outcome


@runtime_checkable
class Waker(Protocol):
    """Capability: block until something may be claimable, without polling."""

    def wait_for_messages(self, timeout: float, queues: Sequence[str] | None = None) -> None:
        """Return when a message of ``queues`` (any for None) may be claimable,
        ``interrupt()`` is called, or ``timeout`` seconds pass."""
        ...

    def interrupt(self) -> None:
        """Wake every ``wait_for_messages`` caller now (used to stop)."""
        ...


@runtime_checkable
class AckAndClaim(Protocol):
    """Capability: record an outcome and claim the next messages in one round trip.

    A worker whose pools are full frees a slot with every finished call; with
    this capability the thread that finished claims the successor in the
    same transaction or script as the ack, instead of a second round trip.
    """

    def ack_and_claim(
        self,
        delivery: Delivery,
        outcome: Outcome,
        queues: Sequence[str] | None,
        limit: int,
        lease: float,
    ) -> tuple[bool, list[Delivery]]:
        """``ack(delivery, outcome)``, then ``claim(queues, limit, lease)``, at once.

        The first item is what ``ack`` returns. The claim happens whether or
        not the ack was fenced off; both obey exactly what ``ack`` and
        ``claim`` promise on their own. If the call raises, neither happened
        or the ack alone did (the caller retries the ack, which is then
        fenced or repeated harmlessly), never the claim alone.
        """
        ...


@runtime_checkable
class WaitAndClaim(Protocol):
    """Capability: the wait for messages and the claim after it, in one round trip.

    An idle worker waits, then claims what woke it: two round trips between
    the enqueue and the job's start. With this capability the claim is sent
    with the wait and runs on the server the moment the wait ends. A worker
    makes every claim through it.
    """

    def wait_and_claim(
        self, timeout: float, queues: Sequence[str] | None, limit: int, lease: float
    ) -> list[Delivery]:
        """``claim(queues, limit, lease)`` at once if something may be claimable, else
        ``wait_for_messages(timeout, queues)`` and that claim as the wait ends.

        It may return early with nothing claimed (a wake-up whose job another
        worker took, ``interrupt()``, a lost connection), as the wait may;
        what it claims obeys what ``claim`` promises, except that a lease may
        be shorter by up to the wait's length (the broker keeps that a small
        share of ``lease``: the claim's time is taken when the wait begins).
        """
        ...
