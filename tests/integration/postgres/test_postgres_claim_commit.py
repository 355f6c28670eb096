"""A claim commits without waiting for the disk; an enqueue and an ack always wait.

What each transaction commits with is read by the server itself: a trigger
on the jobs table writes down ``synchronous_commit`` as it stood in the
transaction that wrote the row (``claiming.RELAXED_COMMIT``).
"""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from offload._brokers._postgres import PostgresBroker
from offload._message import Message, Outcome, State, new_id


def message(**fields: Any) -> Message:
    fields.setdefault("payload", b"[]")
    return Message(new_id(), "tasks.work", (), {}, **fields)


def watch_commits(server: str, schema: str) -> None:
    """Record (state, synchronous_commit) of every write of a job's row in ``seen``."""
    with psycopg.connect(server, autocommit=True) as connection:
        connection.execute(f'CREATE TABLE "{schema}".seen (n serial, state text, setting text)')
        connection.execute(
            f"""CREATE FUNCTION "{schema}".see() RETURNS trigger AS $$ BEGIN
                INSERT INTO "{schema}".seen (state, setting)
                    VALUES (NEW.state, current_setting('synchronous_commit'));
                RETURN NEW;
            END $$ LANGUAGE plpgsql"""
        )
        connection.execute(
            f'CREATE TRIGGER see AFTER INSERT OR UPDATE ON "{schema}".jobs '
            f'FOR EACH ROW EXECUTE FUNCTION "{schema}".see()'
        )


def seen(server: str, schema: str) -> list[tuple[str, str]]:
    with psycopg.connect(server, autocommit=True) as connection:
        rows = connection.execute(f'SELECT state, setting FROM "{schema}".seen ORDER BY n')
        return [(state, setting) for state, setting in rows.fetchall()]


def test_only_a_claim_commits_without_waiting_for_the_disk(
    broker: PostgresBroker, server: str
) -> None:
    if not psycopg.Pipeline.is_supported():
        pytest.skip("this libpq has no pipeline mode: claims commit as everything else does")
    broker.enqueue([message()])  # the schema exists from here on
    watch_commits(server, broker.schema)
    broker.enqueue([message(), message()])
    (first,) = broker.claim(None, 1, 30)
    (second,) = broker.claim(("default",), 1, 30)  # the one-queue statement too
    assert broker.ack(first, Outcome(State.SUCCEEDED, payload=b"1"))
    acked, claimed = broker.ack_and_claim(
        second, Outcome(State.SUCCEEDED, payload=b"2"), None, 1, 30
    )
    assert acked and len(claimed) == 1  # the first job enqueued, before the trigger
    assert seen(server, broker.schema) == [
        ("queued", "on"),
        ("queued", "on"),
        ("running", "off"),  # claim
        ("running", "off"),  # claim of one queue
        ("succeeded", "on"),  # ack
        ("succeeded", "on"),  # ack and claim: one transaction, so it waits for the disk
        ("running", "on"),
    ]
    # Local to the claim's transaction: the connection's own setting is untouched.
    connection = broker._link._connection
    assert connection is not None
    assert connection.execute("SHOW synchronous_commit").fetchone() == ("on",)
