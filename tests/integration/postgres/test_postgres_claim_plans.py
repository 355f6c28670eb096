"""The PostgreSQL broker's claim is planned once, and its pruning reads only an index,
whatever the queue's depth.

The server plans a prepared statement once (a generic plan) only while that
plan is estimated no dearer than the plans it makes for each call's values;
else it plans every call anew, which at a million queued jobs took longer
than the claim itself. The claims are written so that no estimate depends
on a value (queries.sql, the claim's note): here, a deep, analyzed queue
(where a limit left a parameter made every claim a custom plan) and the
server's own count of the plans it made. And the opportunistic prune before
a claim, which found nothing to delete in a deep queue by reading the whole
table, reads indexes alone (its plan).
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from offload._brokers._postgres import PostgresBroker
from offload._brokers._postgres.claiming import ack_arrays
from offload._brokers._postgres.queries import CLAIM_CAPS, claim_statement, render
from offload._message import Message, State, new_id

# psycopg prepares a statement at its 6th run, the server plans its first 5
# runs as prepared for their values: 12 runs give the server its choice.
RUNS = 12


def message(queue: str = "default") -> Message:
    return Message(new_id(), "tasks.work", (), {}, queue=queue, payload=b"[]")


def plans(broker: PostgresBroker) -> list[tuple[int, int]]:
    """(generic, custom) plans of each claim statement the broker's connection prepared."""
    rows = broker._link.run(
        lambda c: c.execute(
            "SELECT statement, generic_plans, custom_plans FROM pg_prepared_statements"
        ).fetchall()
    )
    return [(generic, custom) for text, generic, custom in rows if "SKIP LOCKED" in text]


def analyze(broker: PostgresBroker) -> None:
    # What autovacuum does to a table that grew: with statistics, a limit
    # estimated as a tenth of the rows made the generic plan look dear.
    broker._link.run(lambda c: c.execute(f'ANALYZE "{broker.schema}".jobs'))


@pytest.mark.parametrize("queues", [None, ("default",)], ids=["all", "one-queue"])
def test_the_claim_is_planned_once_on_a_deep_queue(broker: PostgresBroker, queues: Any) -> None:
    for _ in range(4):
        broker.enqueue([message() for _ in range(1000)])
    analyze(broker)
    claimed = 0
    for limit in (3, 8):  # caps 4 and 8
        for _ in range(RUNS):
            claimed += len(broker.claim(queues, limit, 30))
    assert claimed == RUNS * (3 + 8)
    found = plans(broker)
    assert found, "the claims were prepared"
    assert all(generic > 0 and custom <= 5 for generic, custom in found), found


def test_a_claim_takes_its_limit_not_its_cap(broker: PostgresBroker) -> None:
    broker.enqueue([message() for _ in range(10)])
    assert len(broker.claim(None, 3, 30)) == 3  # the text of cap 4
    assert len(broker.claim(("default",), 5, 30)) == 5  # cap 8
    states = broker.inspector.counts()["default"]
    assert (states.get(State.RUNNING), states.get(State.QUEUED)) == (8, 2)


def test_each_limit_gets_the_least_cap_that_holds_it() -> None:
    sql = render("offload_x")
    caps = {
        limit: int(claim_statement(sql, "claim", limit).split("SKIP LOCKED")[0].split()[-3])
        for limit in (1, 2, 3, 4, 5, 8, 9, 32, 33, 65536, 65537, 10**7)
    }
    assert caps == {
        **{1: 1, 2: 2, 3: 4, 4: 4, 5: 8, 8: 8, 9: 16, 32: 32, 33: 64},
        **{65536: CLAIM_CAPS[-1], 65537: CLAIM_CAPS[-1], 10**7: CLAIM_CAPS[-1]},
    }
    assert "claim" not in sql and "claim_queue" not in sql  # only ever by cap


@pytest.mark.parametrize("analyzed", [False, True])
def test_the_prune_before_a_claim_reads_no_whole_table(
    broker: PostgresBroker, analyzed: bool
) -> None:
    for _ in range(5):
        broker.enqueue([message() for _ in range(1000)])
    if analyzed:
        analyze(broker)
    statement = render(broker.schema)["prune_some"]
    plan = broker._link.run(
        lambda c: c.execute(f"EXPLAIN {statement}", (time.time(), 1000)).fetchall()
    )
    text = "\n".join(row[0] for row in plan)
    assert "Seq Scan" not in text and "jobs_expires" in text, text


def test_a_batch_of_acks_is_planned_once(broker: PostgresBroker) -> None:
    for _ in range(20):
        broker.enqueue([message() for _ in range(1000)])
    statement = render(broker.schema)["ack_many"]

    def acks(c: Any) -> list[tuple[int, int]]:
        for run in range(RUNS):
            size = 2 + run % 5  # batches of every size: their arrays' length
            # Of no job: nothing is written. As the broker sends them (ack_arrays).
            acks = [(new_id(), 1, "succeeded", 1.0, 2.0, b"1", *[None] * 4, False)] * size
            c.execute(statement, ack_arrays(acks), prepare=True).fetchall()
        return c.execute(
            "SELECT generic_plans, custom_plans FROM pg_prepared_statements"
            " WHERE statement LIKE 'WITH v AS%%'"
        ).fetchall()

    ((generic, custom),) = broker._link.run(acks)
    assert generic > 0 and custom <= 5, (generic, custom)


@pytest.mark.parametrize("analyzed", [False, True])
def test_the_next_due_time_is_found_without_reading_every_live_job(
    broker: PostgresBroker, analyzed: bool
) -> None:
    # An idle worker asks before each wait: with many jobs due later, one
    # descent of the index per priority (and queue), not every live job.
    now = time.time()
    for start in range(0, 5000, 1000):
        broker.enqueue(
            [
                Message(
                    *(new_id(), "tasks.work", (), {}),
                    payload=b"[]",
                    eta=now + 3600 + i,
                    priority=i % 3,
                    queue="a" if i % 2 else "b",
                )
                for i in range(start, start + 1000)
            ]
        )
    soonest = Message(new_id(), "tasks.work", (), {}, payload=b"[]", eta=now + 60, priority=1)
    broker.enqueue([soonest])
    if analyzed:
        analyze(broker)
    statements = render(broker.schema)
    for name, params in (("next_due", ()), ("next_due_in", (["a", "default"],))):

        def read(c: Any, name: str = name, params: Any = params) -> tuple[float, list[str]]:
            due = c.execute(statements[name], params).fetchone()[0]
            plan = c.execute(f"EXPLAIN (ANALYZE, BUFFERS) {statements[name]}", params)
            return due, [row[0] for row in plan.fetchall()]

        due, plan = broker._link.run(read)
        assert due == pytest.approx(now + 60), name
        top = next(line for line in plan if "Buffers" in line)  # the whole statement's
        hits = int(top.partition("hit=")[2].split()[0])
        assert hits < 60, f"{name} read {hits} buffers:\n" + "\n".join(plan)
