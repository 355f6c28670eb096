"""Storing a batch of messages: one INSERT, or COPY, and keys taken under advisory locks.

What ``PostgresBroker.enqueue`` and ``enqueue_in`` share once the rows are
built: on the broker's own connection (its ``Link``) the statements are one
transaction of their own; on a caller's connection they join its
transaction, and commit with it. Every row of a batch carries the same
``reply_to``: the reply channel of the producer's result feed while it
listens (``feed.py``), else None, and then its ack sends nothing.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import psycopg
from psycopg.rows import tuple_row

from ..._message import Message
from .link import Connection
from .queries import COPY_TYPES, as_columns, lock_id

Rows = list[tuple[Any, ...]]


def lock_keys(
    connection: Connection, sql: Mapping[str, str], schema: str, keys: Sequence[str]
) -> None:
    """Hold the keys' advisory locks until the transaction ends.

    Two enqueues of one key then run their check-and-insert one after
    the other (the second sees the first's job once it commits). Locks
    are taken in one order everywhere, so two batches cannot deadlock.
    """
    ids = sorted({lock_id(f"key:{schema}:{key}") for key in keys})
    connection.execute(sql["lock_keys"], (ids,))


class Writer:
    """The statements of an enqueue, for the broker's connection or a caller's."""

    # Batches up to this size are one INSERT statement (one round trip);
    # larger ones are copied (COPY), in a transaction with their NOTIFY.
    ONE_STATEMENT = 64

    def __init__(
        self, sql: Mapping[str, str], schema: str, channel: str, reuse_window: float
    ) -> None:
        self._sql = sql
        self._schema = schema
        self._channel = channel
        self._reuse_window = reuse_window

    def store(
        self,
        connection: Connection,
        *,
        messages: Sequence[Message],
        rows: Rows,
        now: float,
        reply_to: str | None = None,
        atomic: bool = False,
    ) -> list[str]:
        """Insert the batch (keyed messages: only where no job holds the key); the ids.

        ``reply_to``: where the acks of the batch's jobs send their outcome.
        ``atomic``: make the statements one transaction (on the broker's
        autocommit connection); else the caller's transaction holds them.
        """
        keyed = any(message.key is not None for message in messages)
        if not keyed and len(rows) <= self.ONE_STATEMENT:
            self._insert(connection, rows, reply_to)  # one statement: atomic on its own
            return [message.id for message in messages]
        with connection.transaction() if atomic else contextlib.nullcontext():
            ids = [message.id for message in messages]
            if keyed:
                ids, rows = self._unkeyed(connection, messages, rows, now)
            if len(rows) <= self.ONE_STATEMENT:
                self._insert(connection, rows, reply_to)
            else:
                self._copy(connection, rows, reply_to)
            return ids

    def retrying(
        self, store: functools.partial[list[str]], ids: list[str]
    ) -> Callable[[Connection], list[str]]:
        """``store`` for ``Link.run``, resolving a retry after a commit we never heard of.

        When the connection breaks during the commit, the batch may be
        stored already: the retry then meets its own ids, and answers them.
        """
        attempts = 0

        def work(connection: Connection) -> list[str]:
            nonlocal attempts
            attempts += 1
            try:
                return store(connection, atomic=True)
            except psycopg.errors.UniqueViolation:
                if attempts > 1 and self._all_stored(connection, ids):
                    return ids
                raise

        return work

    def _unkeyed(
        self, connection: Connection, messages: Sequence[Message], rows: Rows, now: float
    ) -> tuple[list[str], Rows]:
        """Every message's job id, and the rows of those whose key no job holds."""
        keys = sorted({message.key for message in messages if message.key is not None})
        lock_keys(connection, self._sql, self._schema, keys)
        cursor = connection.cursor(row_factory=tuple_row)
        found = cursor.execute(self._sql["holders"], (keys, now - self._reuse_window))
        holders: dict[str, str] = dict(found.fetchall())
        self._final_holders(connection, messages, holders, now)
        ids: list[str] = []
        fresh: Rows = []
        for message, row in zip(messages, rows, strict=True):
            key = message.key
            if key is not None:
                if key in holders:
                    ids.append(holders[key])
                    continue
                holders[key] = message.id
            fresh.append(row)
            ids.append(message.id)
        return ids, fresh

    def _final_holders(
        self,
        connection: Connection,
        messages: Sequence[Message],
        holders: dict[str, str],
        now: float,
    ) -> None:
        """Add to ``holders`` the finished jobs that keys with a horizon still find."""
        by_horizon: dict[float, set[str]] = {}
        for message in messages:
            key, horizon = message.key, message.key_horizon
            if key is not None and horizon is not None and key not in holders:
                by_horizon.setdefault(horizon, set()).add(key)
        cursor = connection.cursor(row_factory=tuple_row)
        for horizon, keys in by_horizon.items():
            found = cursor.execute(self._sql["final_holders"], (sorted(keys), now - horizon))
            for key, job_id in found.fetchall():
                holders.setdefault(key, job_id)

    def _insert(self, connection: Connection, rows: Rows, reply_to: str | None) -> None:
        if not rows:
            return
        if len(rows) == 1:
            queue = rows[0][2]
            params = (*rows[0], reply_to, self._channel, queue)
            connection.execute(self._sql["insert_one"], params)
            return
        queues = sorted({row[2] for row in rows})
        many = (reply_to, *as_columns(rows), self._channel, queues)
        connection.execute(self._sql["insert_many"], many)

    def _copy(self, connection: Connection, rows: Rows, reply_to: str | None) -> None:
        """A large batch: COPY (psycopg formats rows in C; arrays of an INSERT in Python)."""
        with connection.cursor() as cursor:
            with cursor.copy(self._sql["copy"]) as copy:
                copy.set_types((*COPY_TYPES, "text"))
                for row in rows:
                    copy.write_row((*row, reply_to))
            queues = sorted({row[2] for row in rows})
            cursor.execute(self._sql["notify"], (self._channel, queues))

    def _all_stored(self, connection: Connection, ids: list[str]) -> bool:
        row = connection.execute(self._sql["ids_stored"], (ids,)).fetchone()
        return row is not None and row[0] == len(ids)
