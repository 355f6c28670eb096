"""Inspection: what the CLI, the dashboard and ``app.handle(id)`` read and do."""

from __future__ import annotations

import pytest
from contract_support import LEASE, ContractBroker, MessageFactory, claim_ids

from offload._brokers._base import History, JobSearch, Lease, QueueLag
from offload._message import ErrorInfo, Outcome, State
from offload.testing import FakeClock

BOOM = ErrorInfo("builtins.ValueError", "boom", "")


def test_an_unknown_job_is_none(broker: ContractBroker) -> None:
    assert broker.inspector.job("0" * 24) is None


def test_a_queued_job_shows_its_message(
    broker: ContractBroker, message: MessageFactory, clock: FakeClock
) -> None:
    m = message(
        "reports.build", queue="mail", priority=3, eta=clock.now() + 5, key="r", max_deliveries=4
    )
    broker.enqueue([m])
    job = broker.inspector.job(m.id)
    assert job is not None
    assert (job.id, job.task, job.queue, job.state, job.attempt) == (
        m.id,
        "reports.build",
        "mail",
        State.QUEUED,
        0,
    )
    assert (job.priority, job.eta, job.key, job.max_deliveries) == (3, m.eta, "r", 4)
    assert (job.payload, job.created, job.finished, job.result) == (
        m.payload,
        m.created,
        None,
        None,
    )


def test_counts_per_queue_and_state(
    broker: ContractBroker, message: MessageFactory, clock: FakeClock
) -> None:
    default = [message() for _ in range(5)]
    mail = [message(queue="mail") for _ in range(2)]
    later = message(queue="mail", eta=clock.now() + 60)
    broker.enqueue([*default, *mail, later])
    a, b, c, d = broker.claim(["default"], 4, LEASE)
    broker.ack(a, Outcome(State.SUCCEEDED))
    broker.ack(b, Outcome(State.FAILED, error_info=BOOM))
    broker.nack(c, clock.now() + 30, error=BOOM)
    (e,) = broker.claim(["mail"], 1, LEASE)
    broker.ack(e, Outcome.cancelled())
    assert d.message.id
    assert broker.inspector.counts() == {
        "default": {
            State.SUCCEEDED: 1,
            State.FAILED: 1,
            State.RETRYING: 1,
            State.RUNNING: 1,
            State.QUEUED: 1,
        },
        "mail": {State.CANCELLED: 1, State.QUEUED: 2},
    }


def test_jobs_by_state_newest_first(broker: ContractBroker, message: MessageFactory) -> None:
    batch = [message(queue="a" if i % 2 else "b") for i in range(6)]
    broker.enqueue(batch)
    claimed = broker.claim(None, 2, LEASE)
    for delivery in claimed:
        broker.ack(delivery, Outcome(State.FAILED, error_info=BOOM))
    failed = broker.inspector.jobs(State.FAILED)
    assert [j.id for j in failed] == [d.message.id for d in reversed(claimed)]
    assert all(j.error == BOOM for j in failed)
    queued = [j.id for j in broker.inspector.jobs(State.QUEUED)]
    assert queued == [m.id for m in reversed(batch) if m.id not in {j.id for j in failed}]
    assert [j.id for j in broker.inspector.jobs(State.QUEUED, limit=2)] == queued[:2]
    in_a = [j.id for j in broker.inspector.jobs(State.QUEUED, queue="a")]
    assert in_a == [m.id for m in reversed(batch) if m.queue == "a" and m.id in queued]
    assert [j.id for j in broker.inspector.jobs()] == [m.id for m in reversed(batch)]


def test_cancel_a_queued_job(broker: ContractBroker, message: MessageFactory) -> None:
    m, other = message(), message()
    broker.enqueue([m, other])
    assert broker.inspector.cancel(m.id) is True
    job = broker.inspector.job(m.id)
    assert job is not None
    assert job.state is State.CANCELLED
    assert claim_ids(broker) == [other.id]
    assert broker.inspector.cancel(m.id) is False, "already cancelled"


def test_cancel_a_retrying_or_delayed_job(
    broker: ContractBroker, message: MessageFactory, clock: FakeClock
) -> None:
    retrying, delayed = message(), message(eta=clock.now() + 60)
    broker.enqueue([retrying, delayed])
    (delivery,) = broker.claim(None, 1, LEASE)
    broker.nack(delivery, clock.now() + 30, error=BOOM)
    assert broker.inspector.cancel(retrying.id) is True
    assert broker.inspector.cancel(delayed.id) is True
    clock.advance(120)
    assert claim_ids(broker) == []


def test_cancel_refuses_finished_and_unknown_jobs(
    broker: ContractBroker, message: MessageFactory
) -> None:
    done = message()
    broker.enqueue([done])
    (delivery,) = broker.claim(None, 1, LEASE)
    broker.ack(delivery, Outcome(State.SUCCEEDED))
    assert broker.inspector.cancel(done.id) is False
    assert broker.inspector.cancel("0" * 24) is False


def test_cancel_of_a_running_job_is_asked_and_heard_at_the_next_renewal(
    broker: ContractBroker, message: MessageFactory
) -> None:
    running, other = message(), message()
    broker.enqueue([running, other])
    first, second = broker.claim(None, 2, LEASE)
    assert broker.extend(first, LEASE) is Lease.HELD
    assert broker.inspector.cancel(running.id) is True, "asked: its worker will stop it"
    job = broker.inspector.job(running.id)
    assert job is not None and job.state is State.RUNNING, "asked, not done"
    assert broker.extend(first, LEASE) is Lease.CANCEL
    assert broker.extend(second, LEASE) is Lease.HELD, "only the job asked"
    assert broker.ack(first, Outcome.cancelled()) is True
    finished = broker.inspector.job(running.id)
    assert finished is not None and finished.state is State.CANCELLED
    assert broker.inspector.cancel(running.id) is False, "finished"


def test_a_cancel_request_outlives_a_lost_worker_and_a_retry_forgets_it(
    broker: ContractBroker, message: MessageFactory, clock: FakeClock
) -> None:
    m = message()
    broker.enqueue([m])
    broker.claim(None, 1, LEASE)
    broker.inspector.cancel(m.id)
    clock.advance(LEASE + 1)  # its worker died before hearing it
    (second,) = broker.claim(None, 1, LEASE)
    assert broker.extend(second, LEASE) is Lease.CANCEL, "the next worker hears it"
    broker.ack(second, Outcome.cancelled())
    assert broker.inspector.retry(m.id)
    (third,) = broker.claim(None, 1, LEASE)
    assert broker.extend(third, LEASE) is Lease.HELD, "a retried job runs on"


def test_retry_a_failed_job(broker: ContractBroker, message: MessageFactory) -> None:
    m = message(max_deliveries=3)
    broker.enqueue([m])
    (delivery,) = broker.claim(None, 1, LEASE)
    broker.ack(delivery, Outcome(State.FAILED, error_info=BOOM))
    assert broker.inspector.retry(m.id) is True
    job = broker.inspector.job(m.id)
    assert job is not None
    assert (job.state, job.attempt, job.error, job.finished) == (State.QUEUED, 0, None, None)
    (again,) = broker.claim(None, 1, LEASE)
    assert (again.message.id, again.attempt) == (m.id, 1)


def test_retry_a_cancelled_job(broker: ContractBroker, message: MessageFactory) -> None:
    m = message()
    broker.enqueue([m])
    broker.inspector.cancel(m.id)
    assert broker.inspector.retry(m.id) is True
    assert claim_ids(broker) == [m.id]


def test_retry_refuses_live_succeeded_and_unknown_jobs(
    broker: ContractBroker, message: MessageFactory
) -> None:
    done, queued = message(), message()
    broker.enqueue([done, queued])
    (delivery,) = broker.claim(None, 1, LEASE)
    assert delivery.message.id == done.id
    assert broker.inspector.retry(done.id) is False, "running"
    broker.ack(delivery, Outcome(State.SUCCEEDED))
    assert broker.inspector.retry(done.id) is False, "succeeded"
    assert broker.inspector.retry(queued.id) is False, "queued"
    assert broker.inspector.retry("0" * 24) is False


def test_retry_refuses_a_job_whose_key_is_taken_again(
    broker: ContractBroker, message: MessageFactory
) -> None:
    first = message(key="k")
    broker.enqueue([first])
    (delivery,) = broker.claim(None, 1, LEASE)
    broker.ack(delivery, Outcome(State.FAILED, error_info=BOOM))
    second = message(key="k")
    broker.enqueue([second])
    assert broker.inspector.retry(first.id) is False, "two live jobs would share the key"


# -- paging and search (JobSearch: SQLite, PostgreSQL, memory) ---------------------------


def _searcher(broker: ContractBroker) -> JobSearch:
    inspector = broker.inspector
    if not isinstance(inspector, JobSearch):
        pytest.skip(f"{type(inspector).__name__} does not page by cursor (dashboard falls back)")
    return inspector


def test_pages_follow_the_cursor_newest_first(
    broker: ContractBroker, message: MessageFactory
) -> None:
    search = _searcher(broker)
    batch = [message() for _ in range(7)]
    broker.enqueue(batch)
    newest_first = [m.id for m in reversed(batch)]
    seen: list[str] = []
    cursor = None
    for _ in range(4):
        page = search.search_jobs(limit=3, after=cursor)
        seen += [job.id for job in page.jobs]
        cursor = page.cursor
        if cursor is None:
            break
    assert seen == newest_first
    assert len(search.search_jobs(limit=7).jobs) == 7
    assert search.search_jobs(limit=7).cursor is None


def test_search_by_id_key_and_task_prefix(broker: ContractBroker, message: MessageFactory) -> None:
    search = _searcher(broker)
    mail = message("mail.send", key="user:42")
    report = message("reports.build", queue="slow")
    other = message("mail.bounce")
    broker.enqueue([mail, report, other])
    assert [j.id for j in search.search_jobs(text=report.id).jobs] == [report.id]
    assert [j.id for j in search.search_jobs(text="user:42").jobs] == [mail.id]
    assert [j.id for j in search.search_jobs(text="mail.").jobs] == [other.id, mail.id]
    assert search.search_jobs(text="nothing").jobs == []
    assert [j.id for j in search.search_jobs(queue="slow").jobs] == [report.id]
    assert search.search_jobs(state=State.FAILED).jobs == []


def test_search_by_state_pages_past_other_states(
    broker: ContractBroker, message: MessageFactory
) -> None:
    search = _searcher(broker)
    batch = [message() for _ in range(6)]
    broker.enqueue(batch)
    for delivery in broker.claim(None, 4, LEASE)[::2]:
        broker.ack(delivery, Outcome(State.FAILED, error_info=BOOM))
    first = search.search_jobs(State.FAILED, limit=1)
    assert len(first.jobs) == 1 and first.cursor is not None
    second = search.search_jobs(State.FAILED, limit=1, after=first.cursor)
    assert [j.state for j in first.jobs + second.jobs] == [State.FAILED, State.FAILED]
    assert first.jobs[0].id != second.jobs[0].id
    assert second.cursor is None  # the last page says so


def test_oldest_ready_is_the_lag_of_each_queue(
    broker: ContractBroker, message: MessageFactory, clock: FakeClock
) -> None:
    inspector = broker.inspector
    if not isinstance(inspector, QueueLag):
        pytest.skip(f"{type(inspector).__name__} does not tell queue lag")
    start = clock.now()
    broker.enqueue([message(), message(queue="mail", eta=start + 60)])
    clock.advance(5)
    broker.enqueue([message(priority=9)])  # claimed first, yet not the oldest
    assert inspector.oldest_ready() == {"default": start}  # mail's job is not due yet
    clock.advance(60)
    assert inspector.oldest_ready() == {"default": start, "mail": start + 60}
    broker.claim(["default"], 2, LEASE)  # running jobs are not waiting
    assert inspector.oldest_ready() == {"mail": start + 60}


def test_search_by_task_pages_through_every_match(
    broker: ContractBroker, message: MessageFactory
) -> None:
    search = _searcher(broker)
    batch = [message("mail.send" if i % 3 else "reports.build") for i in range(12)]
    broker.enqueue(batch)
    wanted = [m.id for m in reversed(batch) if m.task == "mail.send"]
    seen: list[str] = []
    cursor = None
    for _ in range(20):  # a page may be short and still have a cursor: follow it
        page = search.search_jobs(text="mail.", limit=3, after=cursor)
        assert len(page.jobs) <= 3
        seen += [job.id for job in page.jobs]
        cursor = page.cursor
        if cursor is None:
            break
    assert seen == wanted


def test_a_cursor_that_is_not_one_is_refused(broker: ContractBroker) -> None:
    search = _searcher(broker)
    with pytest.raises(ValueError, match="not a page cursor"):
        search.search_jobs(after="nan")


def test_throughput_per_minute_and_queue(
    broker: ContractBroker, message: MessageFactory, clock: FakeClock
) -> None:
    inspector = broker.inspector
    if not isinstance(inspector, History):
        pytest.skip(f"{type(inspector).__name__} keeps no throughput history")
    minute = (clock.now() // 60 + 1) * 60
    clock.advance(minute - clock.now())  # the start of a minute
    broker.enqueue([message(), message(), message(), message(queue="mail")])
    a, b, c, d = broker.claim(None, 4, LEASE)
    broker.ack(a, Outcome(State.SUCCEEDED))
    broker.ack(b, Outcome(State.FAILED, error_info=BOOM))
    broker.nack(c, clock.now() + 1, error=BOOM)  # a retry to come: nothing finished
    clock.advance(61)
    broker.ack(d, Outcome(State.SUCCEEDED))
    assert [tuple(row) for row in inspector.throughput(minute - 3600)] == [
        (minute, "default", 1, 1),
        (minute + 60, "mail", 1, 0),
    ]
    assert [tuple(row) for row in inspector.throughput(minute + 60)] == [
        (minute + 60, "mail", 1, 0)
    ]
