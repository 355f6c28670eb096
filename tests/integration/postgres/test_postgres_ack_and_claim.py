"""The PostgreSQL broker's ``ack_and_claim``: one round trip, refusals alone, reconnects.

The contract suite holds it to ``ack`` then ``claim``; here, what only
PostgreSQL shows: the statements go as one pipeline (one Sync, so one
implicit transaction and one round trip), an ack the server refuses fails
its caller alone, and a lost connection is made again.
"""

from __future__ import annotations

import tempfile
from typing import Any

import psycopg
import pytest

from offload import MessageRejected
from offload._brokers._postgres import PostgresBroker
from offload._brokers._postgres.claiming import ack_row, write_acks
from offload._message import Delivery, ErrorInfo, Message, Outcome, State, new_id


def message(**fields: Any) -> Message:
    fields.setdefault("payload", b"[]")
    return Message(new_id(), "tasks.work", (), {}, **fields)


def test_an_ack_and_its_claim_are_one_round_trip(broker: PostgresBroker) -> None:
    broker.enqueue([message() for _ in range(3)])
    (running,) = broker.claim(None, 1, 30)
    connection = broker._link._connection
    assert connection is not None
    if not psycopg.Pipeline.is_supported():
        pytest.skip("this libpq has no pipeline mode: the statements go one by one")
    with tempfile.TemporaryFile("w+") as trace:
        connection.pgconn.trace(trace.fileno())
        try:
            acked, claimed = broker.ack_and_claim(
                running, Outcome(State.SUCCEEDED, payload=b"1"), None, 2, 30
            )
        finally:
            connection.pgconn.untrace()
        trace.seek(0)
        messages = [line.split("\t")[1:4:2] for line in trace.read().splitlines() if "\t" in line]
    assert acked is True and len(claimed) == 2
    sent = [name.strip() for side, name in messages if side == "F"]
    assert sent.count("Sync") == 1, f"one Sync: one implicit transaction ({sent})"
    first_answer = next(i for i, (side, _) in enumerate(messages) if side == "B")
    assert all(side == "B" for side, _ in messages[first_answer:]), "all sent, then all read"


def test_an_ack_the_server_refuses_fails_alone(broker: PostgresBroker) -> None:
    broker.enqueue([message() for _ in range(6)])
    running = broker.claim(None, 3, 30)
    now = broker._clock.now()
    calls = [(ack_row(d, Outcome.success(None), now, 60.0), (None, 1, 30.0)) for d in running]
    # What the driver refuses (offload's own acks never carry it: this is the last line of
    # defence, for a value that slipped through).
    refused_ack = (*calls[1][0][:6], "E", "a NUL\x00 the driver refuses", "", None, False)
    calls[1] = (refused_ack, calls[1][1])
    answers = broker._ack_claims._together(calls, None)
    assert isinstance(answers[1], MessageRejected), answers[1]
    good = [answer for answer in (answers[0], answers[2]) if isinstance(answer, tuple)]
    assert [(acked, len(claimed)) for acked, claimed in good] == [(True, 1), (True, 1)]
    refused = broker.inspector.job(running[1].message.id)
    assert refused is not None and refused.state is State.FAILED and refused.error is not None
    assert "could not be stored" in refused.error.message
    assert broker.inspector.counts() == {
        "default": {State.SUCCEEDED: 2, State.FAILED: 1, State.RUNNING: 2, State.QUEUED: 1}
    }


def test_ack_and_claim_reconnects_after_its_backend_is_terminated(
    broker: PostgresBroker, server: str
) -> None:
    first, second = message(priority=1), message()
    broker.enqueue([first, second])
    (running,) = broker.claim(None, 1, 30)
    row = broker._link.run(lambda c: c.execute("SELECT pg_backend_pid()").fetchone())
    assert row is not None
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (row[0],))
    acked, claimed = broker.ack_and_claim(running, Outcome.success(None), None, 5, 30)
    assert acked is True
    assert [d.message.id for d in claimed] == [second.id]
    assert broker.inspector.counts() == {"default": {State.SUCCEEDED: 1, State.RUNNING: 1}}


def test_a_queue_list_is_claimed_in_its_order(broker: PostgresBroker) -> None:
    running, a, b = message(queue="c"), message(queue="a"), message(queue="b", priority=9)
    broker.enqueue([running, a, b])
    (delivery,) = broker.claim(["c"], 1, 30)
    claimed: list[Delivery]
    _, claimed = broker.ack_and_claim(delivery, Outcome.success(None), ["a", "b"], 2, 30)
    assert [d.message.id for d in claimed] == [a.id, b.id]


def test_a_batch_of_acks_stores_every_value_as_given(broker: PostgresBroker) -> None:
    # One ack_many statement (its rows travel as array literals, ack_arrays): bytes of
    # every value, texts that need escaping or read as NULL unquoted, a time to the last
    # bit, an expiry never reached.
    broker.enqueue([message() for _ in range(3)])
    first, second, third = broker.claim(None, 3, 30)
    every_byte = bytes(range(256))
    texts = ('quote " backslash \\ slash / tab \t {}', "line\nbreak, é, 漢字, 🎉", '["a", 1]')
    finished = 1796513194.8871949
    nothing = (None, None, None, None, False)  # no error; not deleted
    error = ("NULL", *texts, False)
    acks = [
        (first.message.id, first.token, "succeeded", finished, float("inf"), every_byte, *nothing),
        (second.message.id, second.token, "failed", finished, None, None, *error),
        (third.message.id, third.token, "succeeded", 2.5, 3.5, b"", *nothing),
    ]
    # write_acks: the statement itself (_store_acks would retry a refused batch ack by ack)
    stored = broker._link.run(lambda c: write_acks(c, broker._sql, acks))
    assert len(stored) == 3
    done, failed, empty = (broker.inspector.job(d.message.id) for d in (first, second, third))
    assert done is not None and failed is not None and empty is not None
    assert (done.state, done.result, done.finished) == (State.SUCCEEDED, every_byte, finished)
    assert failed.state is State.FAILED and failed.error == ErrorInfo("NULL", *texts)
    assert (empty.result, empty.finished) == (b"", 2.5)
    expires = broker._link.run(
        lambda c: c.execute(
            f"SELECT expires FROM {broker.schema}.jobs WHERE id = %s", (first.message.id,)
        ).fetchone()
    )
    assert expires == (float("inf"),)
