"""What the CLI, the dashboard and ``app.handle(id)`` read of a PostgreSQL broker's jobs.

``PostgresInspector`` shares its broker's ``Link`` (one connection per
broker, lock-guarded, reconnected with bounded retries): inspecting opens
no connection of its own, and sees the schema the broker checked.

A record that cannot be read whole shows as a failed job saying why
(``row_info``, ``state_of``): one damaged row never fails a listing or a
poll. An id or queue name PostgreSQL cannot store (NUL, a lone surrogate)
names no job: the answer is "none", not the driver's error.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import psycopg

from ..._clock import Clock
from ..._message import Delivery, JobInfo, Progress, State
from .._base import JobPage, Throughput, WorkerInfo
from .._sql_rows import row_info, seq_cursor, state_of
from .enqueue import lock_keys
from .link import Connection, Link
from .values import storable_text
from .workers import live_workers

_NO_CURSOR = 2**63 - 1
"""Larger than any ``seq``: the first page."""


class PostgresInspector:
    """The ``Inspector`` of a ``PostgresBroker``: its jobs, read and managed by id."""

    def __init__(
        self,
        link: Link,
        sql: Mapping[str, str],
        *,
        schema: str,
        channel: str,
        clock: Clock,
        result_ttl: float,
    ) -> None:
        self._link = link
        self._sql = sql
        self._schema = schema
        self._channel = channel  # the broker's NOTIFY channel: a retry wakes its workers
        self._clock = clock
        self._result_ttl = result_ttl

    def __repr__(self) -> str:
        return f"<PostgresInspector schema={self._schema!r}>"

    def job(self, job_id: str) -> JobInfo | None:
        if not storable_text(job_id):
            return None
        row = self._link.run(lambda c: c.execute(self._sql["job"], (job_id,)).fetchone())
        return None if row is None else row_info(row)

    def record_progress(self, delivery: Delivery, progress: Progress) -> bool:
        done, total, note, at = progress
        params = {
            "id": delivery.message.id,
            "token": delivery.token,
            "done": done,
            "total": total,
            "note": note,
            "at": at,
        }
        sql = self._sql["record_progress"]
        return bool(self._link.run(lambda c: c.execute(sql, params).rowcount) == 1)

    def record_step(self, delivery: Delivery, name: str, result: bytes) -> bool:
        params = {"id": delivery.message.id, "token": delivery.token, "name": name}
        params["result"] = result
        sql = self._sql["record_step"]
        row = self._link.run(lambda c: c.execute(sql, params).fetchone())
        return row is not None and row[0] == 1

    def step_result(self, job_id: str, name: str) -> bytes | None:
        if not storable_text(job_id) or not storable_text(name):
            return None
        sql = self._sql["step_result"]
        row = self._link.run(lambda c: c.execute(sql, (job_id, name)).fetchone())
        return (
            bytes(row[0]) if row is not None and isinstance(row[0], (bytes, memoryview)) else None
        )

    def progress(self, job_id: str) -> Progress | None:
        if not storable_text(job_id):
            return None
        row = self._link.run(lambda c: c.execute(self._sql["progress"], (job_id,)).fetchone())
        return None if row is None else Progress.stored(*row)

    def job_states(self, job_ids: Sequence[str]) -> dict[str, State]:
        ids = list(job_ids)
        try:
            rows = self._link.run(lambda c: c.execute(self._sql["states"], (ids,)).fetchall())
        except (psycopg.DataError, UnicodeError):
            ids = [job_id for job_id in ids if storable_text(job_id)]  # only then: one pass
            rows = self._link.run(lambda c: c.execute(self._sql["states"], (ids,)).fetchall())
        return {job_id: state_of(state) for job_id, state in rows}

    def workers(self) -> list[WorkerInfo]:
        params = {"now": self._clock.now()}
        return live_workers(
            self._link.run(lambda c: c.execute(self._sql["workers_live"], params).fetchall())
        )

    def counts(self) -> dict[str, dict[State, int]]:
        rows = self._link.run(lambda c: c.execute(self._sql["counts"]).fetchall())
        counts: dict[str, dict[State, int]] = {}
        for queue, state, count in rows:
            of_queue = counts.setdefault(queue, {})
            known = state_of(state)
            of_queue[known] = of_queue.get(known, 0) + count
        return counts

    def jobs(
        self, state: State | None = None, queue: str | None = None, limit: int = 50
    ) -> list[JobInfo]:
        if queue is not None and not storable_text(queue):
            return []
        params = {"state": None if state is None else state.value, "queue": queue, "limit": limit}
        rows = self._link.run(lambda c: c.execute(self._sql["jobs"], params).fetchall())
        return [row_info(row) for row in rows]

    def search_jobs(
        self,
        state: State | None = None,
        queue: str | None = None,
        text: str | None = None,
        after: str | None = None,
        limit: int = 50,
    ) -> JobPage:
        before = _NO_CURSOR if after is None else seq_cursor(after)
        if (queue is not None and not storable_text(queue)) or (text and not storable_text(text)):
            return JobPage([], None)
        params = {
            "state": None if state is None else state.value,
            "queue": queue,
            "text": text or None,
            "before": before,
            "limit": limit + 1,
        }
        names: tuple[str, ...] = ("search_jobs_by_id", "search_jobs_by_key") if text else ()
        names += ("search_jobs",)
        rows = self._link.run(lambda c: _first_found(c, [self._sql[n] for n in names], params))
        page = [row_info(row[:-1]) for row in rows[:limit]]
        return JobPage(page, str(rows[limit - 1][-1]) if len(rows) > limit else None)

    def oldest_ready(self) -> dict[str, float]:
        params = {"now": self._clock.now()}
        rows = self._link.run(lambda c: c.execute(self._sql["oldest_ready"], params).fetchall())
        return {queue: float(due) for queue, due in rows}

    def throughput(self, since: float) -> list[Throughput]:
        params = {"since": since}
        rows = self._link.run(lambda c: c.execute(self._sql["throughput"], params).fetchall())
        return [Throughput(float(m), str(q), int(s), int(f)) for m, q, s, f in rows]

    def cancel(self, job_id: str) -> bool:
        if not storable_text(job_id):
            return False
        params = {"id": job_id, "ttl": self._result_ttl, "now": self._clock.now()}

        def work(connection: Connection) -> bool:
            row = connection.execute(self._sql["cancel"], params).fetchone()
            if row is not None and row[0] == 1:
                return True
            return connection.execute(self._sql["cancel_running"], params).rowcount == 1

        return self._link.run(work)

    def retry(self, job_id: str) -> bool:
        if not storable_text(job_id):
            return False
        params = {"id": job_id, "now": self._clock.now(), "channel": self._channel}

        def work(connection: Connection) -> bool:
            with connection.transaction():
                row = connection.execute(self._sql["retry_find"], (job_id,)).fetchone()
                if row is None or row[1] not in (State.FAILED.value, State.CANCELLED.value):
                    return False
                key = row[0]
                if key is not None:
                    lock_keys(connection, self._sql, self._schema, [key])
                    if connection.execute(self._sql["key_held"], (key,)).fetchone():
                        return False  # another job holds the key now: two would run
                connection.execute(self._sql["retry"], params)
                return True

        return self._link.run(work)

    def purge(self, state: State = State.FAILED, queue: str | None = None) -> int:
        if not state.finished:
            raise ValueError(
                f"purge deletes finished jobs (succeeded, failed, cancelled), not {state}"
            )
        if queue is not None and not storable_text(queue):
            return 0
        params = {"state": state.value, "queue": queue}
        return self._link.run(lambda c: c.execute(self._sql["purge"], params).rowcount)

    def prune(self) -> int:
        now = self._clock.now()
        return self._link.run(lambda c: c.execute(self._sql["prune"], (now,)).rowcount)


def _first_found(connection: Connection, queries: Sequence[str], params: Any) -> list[Any]:
    """The rows of the first of ``queries`` that finds any (the last one's, if none do)."""
    rows: list[Any] = []
    for sql in queries:
        rows = connection.execute(sql, params).fetchall()
        if rows:
            break
    return rows
