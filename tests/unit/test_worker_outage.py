"""A broker that goes away and comes back: the worker logs once, and carries on."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

import pytest

import offload
from helpers import WAIT, wait_until
from offload._brokers import MemoryBroker
from offload._handle import Handle
from offload._message import Delivery, Message, Outcome
from offload._runner import Runner, TaskSpec
from offload._worker import Worker
from offload.testing import FakeClock


class FlakyBroker(MemoryBroker):
    """A memory broker that can be switched off, as a network or a server can."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False

    def _check(self) -> None:
        if self.down:
            raise offload.BrokerUnavailable("connection refused (simulated)")

    def claim(self, queues: Sequence[str] | None, limit: int, lease: float) -> list[Delivery]:
        self._check()
        return super().claim(queues, limit, lease)

    def ack(self, delivery: Delivery, outcome: Outcome) -> bool:
        self._check()
        return super().ack(delivery, outcome)


@pytest.mark.parametrize("while_running", [False, True])
def test_an_outage_is_logged_once_and_the_work_completes(
    while_running: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """Down before the task is claimed, or while it runs (its outcome waits)."""
    broker = FlakyBroker()
    gate = threading.Event()
    handles: dict[str, Handle[Any]] = {}

    def double(x: int) -> int:
        gate.wait(WAIT)
        return 2 * x

    runner = Runner(broker, {"double": TaskSpec("double", double)}, FakeClock(), handles)
    worker = Worker(broker, runner, lease=30.0, name="outage")
    handle: Handle[Any] = Handle("job-1", "double")
    handles["job-1"] = handle
    broker.enqueue([Message("job-1", "double", (21,), {})])
    with caplog.at_level(logging.WARNING, logger="offload"):
        if not while_running:
            broker.down = True
        worker.start()
        try:
            if while_running:
                assert wait_until(lambda: bool(worker.running))
                broker.down = True
            gate.set()
            time.sleep(0.5)  # the outage: claims (and the outcome) keep failing
            assert not handle.done()
            broker.down = False
            assert handle.result(timeout=WAIT) == 42
            assert wait_until(lambda: any("reachable again" in r.message for r in caplog.records))
        finally:
            worker.stop()
    down = [r for r in caplog.records if "unreachable" in r.message]
    assert len(down) == 1, [r.message for r in caplog.records]
    assert "running tasks go on" in down[0].message
