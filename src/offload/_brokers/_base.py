"""The contract every broker answers: six methods, plus optional capabilities.

A broker stores messages and hands them out under leases. It decides
nothing: whether a failure is retried, and when, is the runner's choice,
passed in as ``nack(delivery, retry_at)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from .._message import Delivery, Message, Outcome


class Broker(Protocol):
    """Storage and claiming of messages."""

    def enqueue(self, messages: Sequence[Message]) -> None:
        """Store messages; each becomes claimable at its ``eta`` (or now)."""
        ...

    def claim(self, queues: Sequence[str] | None, limit: int, lease: float) -> list[Delivery]:
        """Up to ``limit`` claimable messages, leased for ``lease`` seconds.

        Claimable: due messages of ``queues`` (all queues for ``None``), in
        the order of ``queues``, then by priority (higher first), then by
        age, and messages whose lease has lapsed (a worker died). Each claim
        adds one to the message's ``attempt``.
        """
        ...

    def ack(self, delivery: Delivery, outcome: Outcome) -> bool:
        """Record the final outcome; the message leaves the queue.

        Returns ``False`` (and changes nothing) when the delivery's lease
        was lost to another claim.
        """
        ...

    def nack(self, delivery: Delivery, retry_at: float | None) -> bool:
        """Put the message back: claimable at ``retry_at``, or now for ``None``."""
        ...

    def extend(self, delivery: Delivery, lease: float) -> bool:
        """Renew the lease of a running message for ``lease`` more seconds."""
        ...

    def close(self) -> None:
        """Release connections and wake anyone blocked in a wait."""
        ...


@runtime_checkable
class Waker(Protocol):
    """Capability: block until something may be claimable, without polling."""

    def wait_for_messages(self, timeout: float) -> None:
        """Return when a message may be claimable, ``interrupt()`` is called,
        or ``timeout`` seconds pass."""
        ...

    def interrupt(self) -> None:
        """Wake every ``wait_for_messages`` caller now (used to stop)."""
        ...
