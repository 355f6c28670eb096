"""The SQLite broker's throughput history (``History``): finished jobs per minute and queue.

Written by triggers as jobs finish, kept in the file: a broker opened
again (a restarted dashboard) reads the same minutes.
"""

from __future__ import annotations

from pathlib import Path

from offload._brokers._base import History
from offload._brokers._sqlite import SqliteBroker
from offload._message import ErrorInfo, Message, Outcome, State, new_id
from offload.testing import FakeClock

BOOM = ErrorInfo("builtins.ValueError", "boom", "")


def _message(clock: FakeClock, queue: str = "default") -> Message:
    return Message(
        new_id(), "tasks.work", (), {}, queue=queue, created=clock.now(), payload=b"[[], {}]"
    )


def test_finished_jobs_are_counted_per_minute_and_queue(tmp_path: Path) -> None:
    clock = FakeClock(start=1_800_000_000.0)  # a minute's start
    broker = SqliteBroker(tmp_path / "jobs.db", clock=clock)
    inspector = broker.inspector
    assert isinstance(inspector, History)
    broker.enqueue([_message(clock) for _ in range(4)] + [_message(clock, "mail")])
    a, b, c, d, e = broker.claim(None, 5, 30.0)
    broker.ack(a, Outcome(State.SUCCEEDED))
    broker.ack(b, Outcome(State.FAILED, error_info=BOOM))
    broker.nack(c, clock.now() + 5, error=BOOM)  # a retry to come: not finished
    clock.advance(60)
    broker.ack(d, Outcome(State.SUCCEEDED))
    broker.ack(e, Outcome(State.SUCCEEDED))
    rows = inspector.throughput(0)
    assert [tuple(r) for r in rows] == [
        (1_800_000_000.0, "default", 1, 1),
        (1_800_000_060.0, "default", 1, 0),
        (1_800_000_060.0, "mail", 1, 0),
    ]
    assert [tuple(r) for r in inspector.throughput(1_800_000_060.0)] == [tuple(r) for r in rows[1:]]
    broker.close()
    again = SqliteBroker(tmp_path / "jobs.db", clock=clock)  # a restart keeps them
    assert [tuple(r) for r in again.inspector.throughput(0)] == [tuple(r) for r in rows]
    again.close()


def test_a_retried_job_counts_when_it_finishes_and_a_retry_from_failed_does_not(
    tmp_path: Path,
) -> None:
    clock = FakeClock(start=1_800_000_000.0)
    broker = SqliteBroker(tmp_path / "jobs.db", clock=clock)
    message = _message(clock)
    broker.enqueue([message])
    (delivery,) = broker.claim(None, 1, 30.0)
    broker.ack(delivery, Outcome(State.FAILED, error_info=BOOM))
    assert broker.inspector.retry(message.id)  # failed -> queued: nothing finished
    (delivery,) = broker.claim(None, 1, 30.0)
    broker.ack(delivery, Outcome(State.SUCCEEDED))
    (row,) = broker.inspector.throughput(0)  # type: ignore[attr-defined]
    assert (row.succeeded, row.failed) == (1, 1)
    broker.close()


def test_a_job_deleted_at_its_ack_counts_as_succeeded(tmp_path: Path) -> None:
    clock = FakeClock(start=1_800_000_000.0)
    broker = SqliteBroker(tmp_path / "jobs.db", clock=clock, result_ttl=0)
    broker.enqueue([_message(clock)])
    (delivery,) = broker.claim(None, 1, 30.0)
    broker.ack(delivery, Outcome(State.SUCCEEDED))
    assert broker.inspector.job(delivery.message.id) is None  # nothing kept
    (row,) = broker.inspector.throughput(0)  # type: ignore[attr-defined]
    assert (row.queue, row.succeeded, row.failed) == ("default", 1, 0)
    broker.close()


def test_minutes_older_than_a_day_are_forgotten(tmp_path: Path) -> None:
    clock = FakeClock(start=1_800_000_000.0)
    broker = SqliteBroker(tmp_path / "jobs.db", clock=clock)
    for _ in range(2):
        broker.enqueue([_message(clock)])
        (delivery,) = broker.claim(None, 1, 30.0)
        broker.ack(delivery, Outcome(State.SUCCEEDED))
        clock.advance(86400 + 60)
    (row,) = broker.inspector.throughput(0)  # type: ignore[attr-defined]
    assert row.minute == 1_800_000_000.0 + 86400 + 60
    broker.close()
