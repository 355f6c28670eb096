"""The leases of one worker's running deliveries: renewed, lost, released.

One heartbeat thread renews every running delivery's lease each third of
a lease. The broker's answer says whether the lease is still held: a lost
one (it lapsed while the worker was stopped or cut off, and another worker
claimed the job) is logged once, and the attempt's outcome is then not
recorded when it ends; the fencing token would refuse it anyway.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from ._brokers import Broker
from ._brokers._base import Lease
from ._clock import Clock
from ._joblog import job_fields
from ._message import Delivery
from ._outage import Outage

log = logging.getLogger(__name__)


class Leases:
    """Running deliveries by fencing token, and the heartbeat that keeps their leases."""

    def __init__(
        self, broker: Broker, lease: float, clock: Clock, outage: Outage, closed: threading.Event
    ) -> None:
        self._broker = broker
        self.on_cancel: Callable[[Delivery], None] | None = None
        """Told when the broker says someone cancelled a running job (``Lease.CANCEL``)."""
        self._lease = lease
        self._clock = clock
        self._outage = outage
        self._closed = closed
        # Written by the dispatcher and pool threads without a lock: a single
        # dict store or pop is atomic.
        self.active: dict[int, Delivery] = {}
        self.lost: set[int] = set()
        """Tokens whose lease was lost while their call ran: its outcome is not recorded."""
        self.settled: set[int] = set()
        """Tokens whose outcome is being recorded, or was while their call still runs (a
        thread's job cancelled): the slot stays taken, but there is no lease to renew."""

    def heartbeat(self) -> None:
        """Renew the leases of running messages every third of a lease, until closed."""
        while not self._clock.wait(self._closed, self._lease / 3):
            for delivery in list(self.active.values()):
                if delivery.token in self.settled:
                    continue
                try:
                    answer = self._broker.extend(delivery, self._lease)
                except Exception as error:  # noqa: BLE001 - logged once per outage
                    self._outage.failed("renewing leases", error)
                    break
                if answer is Lease.CANCEL:
                    self._cancel(delivery)
                elif answer is Lease.LOST and self._lapsed(delivery):
                    log.warning(
                        "Job %s (task %s): its lease was lost (it lapsed and another worker "
                        "claimed it, or the job was deleted); this attempt's outcome will not "
                        "be recorded",
                        delivery.message.id,
                        delivery.message.task,
                        extra=job_fields(delivery),
                    )

    def _lapsed(self, delivery: Delivery) -> bool:
        """A "lost" answer that means it: the delivery still runs, not settled meanwhile
        (renewals are slow round trips: the job may have finished since the list was
        taken), and not said before."""
        token = delivery.token
        if token in self.lost or token in self.settled or token not in self.active:
            return False
        self.lost.add(token)
        return True

    def _cancel(self, delivery: Delivery) -> None:
        if self.on_cancel is None:
            return
        try:
            self.on_cancel(delivery)
        except Exception:  # the heartbeat goes on for the other jobs
            log.exception(
                "offload worker: could not stop cancelled job %s",
                delivery.message.id,
                extra=job_fields(delivery),
            )

    def forget_if_lost(self, delivery: Delivery) -> bool:
        """``True`` if ``delivery``'s lease was lost: its outcome must not be recorded."""
        if delivery.token not in self.lost:
            return False
        self.lost.discard(delivery.token)
        log.info(
            "Job %s (task %s) ended after its lease was lost; its outcome was not recorded",
            delivery.message.id,
            delivery.message.task,
            extra=job_fields(delivery),
        )
        return True

    def release(self, delivery: Delivery) -> bool:
        """Give ``delivery`` back to the broker as if never claimed (no attempt counted)."""
        try:
            return self._broker.nack(delivery, None, penalty=False)
        except Exception:
            log.exception(
                "offload worker: could not release %s",
                delivery.message.id,
                extra=job_fields(delivery),
            )
            return False
