"""Progress: what a running task reports, kept by the broker for any process to read.

Every durable broker keeps it (``ProgressStore`` on its inspector); the
memory broker does not need to: an in-process handle hears its job's
progress directly.
"""

from __future__ import annotations

import pytest
from contract_support import LEASE, ContractBroker, MessageFactory

from offload._brokers._base import ProgressStore
from offload._message import Outcome, Progress, State
from offload.testing import FakeClock


def store_of(broker: ContractBroker) -> ProgressStore:
    inspector = broker.inspector
    if not isinstance(inspector, ProgressStore):
        pytest.skip(f"{type(broker).__name__}: in-process handles hear progress directly")
    return inspector


def test_a_running_job_s_progress_is_kept_and_read_back(
    broker: ContractBroker, message: MessageFactory
) -> None:
    store = store_of(broker)
    m = message()
    broker.enqueue([m])
    assert store.progress(m.id) is None
    (delivery,) = broker.claim(None, 1, LEASE)
    assert store.record_progress(delivery, Progress(3, 10, "rows", 1.5))
    assert store.progress(m.id) == Progress(3.0, 10.0, "rows", 1.5)
    assert store.record_progress(delivery, Progress(4, None, None, 2.0))
    assert store.progress(m.id) == Progress(4.0, None, None, 2.0)


def test_progress_outlives_the_attempt_until_the_job_is_deleted(
    broker: ContractBroker, message: MessageFactory
) -> None:
    store = store_of(broker)
    m = message()
    broker.enqueue([m])
    (delivery,) = broker.claim(None, 1, LEASE)
    store.record_progress(delivery, Progress(10, 10, "done", 1.0))
    broker.ack(delivery, Outcome(State.FAILED))
    assert store.progress(m.id) == Progress(10.0, 10.0, "done", 1.0)
    assert broker.inspector.purge(State.FAILED) == 1
    assert store.progress(m.id) is None


def test_a_worker_that_lost_the_lease_writes_no_progress(
    broker: ContractBroker, message: MessageFactory, clock: FakeClock
) -> None:
    store = store_of(broker)
    m = message()
    broker.enqueue([m])
    (first,) = broker.claim(None, 1, LEASE)
    clock.advance(LEASE + 1)
    (second,) = broker.claim(None, 1, LEASE)  # the lease lapsed: another worker has it
    assert store.record_progress(second, Progress(1, 2, "second", 1.0))
    assert not store.record_progress(first, Progress(2, 2, "first", 2.0))
    assert store.progress(m.id) == Progress(1.0, 2.0, "second", 1.0)


def test_a_finished_job_takes_no_more_progress(
    broker: ContractBroker, message: MessageFactory
) -> None:
    store = store_of(broker)
    m = message()
    broker.enqueue([m])
    (delivery,) = broker.claim(None, 1, LEASE)
    broker.ack(delivery, Outcome(State.SUCCEEDED))
    assert not store.record_progress(delivery, Progress(1, None, None, 1.0))
    assert store.progress(m.id) is None


def test_progress_of_an_unknown_job_is_none(broker: ContractBroker) -> None:
    assert store_of(broker).progress("0" * 24) is None


def test_a_note_with_any_unicode_comes_back_whole(
    broker: ContractBroker, message: MessageFactory
) -> None:
    store = store_of(broker)
    m = message()
    broker.enqueue([m])
    (delivery,) = broker.claim(None, 1, LEASE)
    note = "étape 2/3 — 東京 🚀"
    store.record_progress(delivery, Progress(2, 3, note, 1.0))
    assert store.progress(m.id) == Progress(2.0, 3.0, note, 1.0)
