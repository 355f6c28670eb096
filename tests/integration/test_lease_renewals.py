"""The heartbeat's renewals against a real broker: only a lease really lost is reported.

Renewals are round trips, made one by one over a list of the running jobs
taken first: a job may finish (its ack recorded, the worker done with it)
while the ones before it are renewed. The broker then says "lost" for it,
and that must not be logged as a lost lease (it once was, by the dozen, in
every long drain on PostgreSQL).
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import pytest

from helpers import wait_until
from offload._brokers import SqliteBroker
from offload._leases import Leases
from offload._message import Delivery, Message, Outcome, new_id
from offload._outage import Outage
from offload.testing import FakeClock


def test_only_a_job_still_running_under_a_lost_lease_is_reported(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()
    broker = SqliteBroker(tmp_path / "jobs.db", clock=clock)
    broker.enqueue([Message(new_id(), "t", (), {}, payload=b"[]") for _ in range(4)])
    first, finished, recording, robbed = broker.claim(None, 4, 30.0)
    closed = threading.Event()
    leases = Leases(broker, 30.0, clock, Outage(), closed)
    for delivery in (first, finished, recording, robbed):
        leases.active[delivery.token] = delivery
    # The last one's lease lapsed and another worker claimed it: a newer token.
    assert broker.nack(robbed, None, penalty=False)
    assert broker.claim(None, 1, 30.0)[0].message.id == robbed.message.id
    real_extend = broker.extend
    renewed: list[Delivery] = []

    def extend(delivery: Delivery, lease: float) -> Any:
        if delivery is first:  # meanwhile, two calls end
            assert broker.ack(finished, Outcome.success(None))
            del leases.active[finished.token]  # done: the worker forgot it
            leases.settled.add(recording.token)  # its outcome is being recorded
            assert broker.ack(recording, Outcome.success(None))
        renewed.append(delivery)
        return real_extend(delivery, lease)

    broker.extend = extend  # type: ignore[method-assign]
    heartbeat = threading.Thread(target=leases.heartbeat, daemon=True)
    with caplog.at_level(logging.WARNING, logger="offload._leases"):
        heartbeat.start()
        assert wait_until(lambda: robbed in renewed, 10)
        closed.set()
        heartbeat.join(10)
    lost = [r.getMessage() for r in caplog.records if "lease was lost" in r.getMessage()]
    assert len(lost) == 1, lost
    assert robbed.message.id in lost[0]
    assert recording not in renewed, "a lease whose outcome is being recorded is left alone"
    assert leases.forget_if_lost(robbed), "its outcome will not be recorded"
    assert not leases.forget_if_lost(finished)
    broker.close()
