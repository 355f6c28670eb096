"""What the CLI, the dashboard and handles read of a SQLite broker's jobs.

``SqliteInspector`` shares the broker's connection and lock (``Database``):
opening the broker opens one connection, whatever reads it. Inspection
never raises because of one row: a corrupt job shows as failed
(``_sql_rows.row_info``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ..._clock import Clock
from ..._message import Delivery, JobInfo, Progress, State
from .._base import JobPage, Throughput, WorkerInfo
from .._sql_rows import row_info, seq_cursor, state_of
from .connection import Database, fetch
from .schema import QUERIES
from .statements import fence
from .workers import live_workers

_CHUNK = 500
"""Ids per ``job_states`` query: under SQLite's bound-variable limit (999 before 3.32)."""

_NO_CURSOR = 2**63 - 1
"""Larger than any ``seq``: the first page."""


class SqliteInspector:
    """Inspection of one SQLite broker's file (``broker.inspector``).

    ``notify`` wakes the broker's waiters in this process when a job becomes
    claimable here (``retry``): other processes see the file change.
    """

    def __init__(
        self, database: Database, clock: Clock, result_ttl: float, notify: Callable[[], None]
    ) -> None:
        self._database = database
        self._clock = clock
        self._result_ttl = result_ttl
        self._notify = notify

    def change_token(self) -> int:
        """Changes when another connection commits: nothing new if it did not.

        This process's own writes go through the same connection, and leave
        it as it is: what they finish, this process's runner settles itself.
        """
        return self._database.data_version()

    def workers(self) -> list[WorkerInfo]:
        return live_workers(self._database.read(QUERIES["workers_live"], (self._clock.now(),)))

    def job(self, job_id: str) -> JobInfo | None:
        rows = self._database.read(QUERIES["job"], (job_id,))
        return row_info(rows[0]) if rows else None

    def record_progress(self, delivery: Delivery, progress: Progress) -> bool:
        done, total, note, at = progress
        params = (done, total, note, at, *fence(delivery.token))
        return self._database.change(QUERIES["record_progress"], params) == 1

    def record_step(self, delivery: Delivery, name: str, result: bytes) -> bool:
        held = fence(delivery.token)
        if self._database.change(QUERIES["record_step"], (name, result, *held)) == 1:
            return True
        return bool(self._database.read(QUERIES["step_held"], held))  # recorded before?

    def step_result(self, job_id: str, name: str) -> bytes | None:
        rows = self._database.read(QUERIES["step_result"], (job_id, name))
        return bytes(rows[0][0]) if rows and isinstance(rows[0][0], bytes) else None

    def progress(self, job_id: str) -> Progress | None:
        rows = self._database.read(QUERIES["progress"], (job_id,))
        return Progress.stored(*rows[0]) if rows else None

    def job_states(self, job_ids: Sequence[str]) -> dict[str, State]:
        states: dict[str, State] = {}
        for start in range(0, len(job_ids), _CHUNK):
            chunk = job_ids[start : start + _CHUNK]
            sql = QUERIES["job_states"].format(marks=",".join("?" * len(chunk)))
            rows = self._database.read(sql, chunk)
            states.update((job_id, state_of(state)) for job_id, state in rows)
        return states

    def counts(self) -> dict[str, dict[State, int]]:
        live: dict[str, int] = {}
        counts: dict[str, dict[State, int]] = {}
        total = 0
        for queue, kind, count in self._database.read(QUERIES["counts"]):
            if kind == "all":
                total = count
            elif kind == "live":
                live[queue] = count
            else:
                counts.setdefault(queue, {})[state_of(kind)] = count
        for queue, count in live.items():
            by_state = counts.setdefault(queue, {})
            queued = count - by_state.get(State.RUNNING, 0) - by_state.get(State.RETRYING, 0)
            if queued:
                by_state[State.QUEUED] = queued
        if total != sum(sum(by_state.values()) for by_state in counts.values()):
            for queue, state, count in self._database.read(QUERIES["counts_unknown"]):
                by_state = counts.setdefault(queue, {})
                by_state[state_of(state)] = by_state.get(state_of(state), 0) + count
        return counts

    def jobs(
        self, state: State | None = None, queue: str | None = None, limit: int = 50
    ) -> list[JobInfo]:
        params = (None if state is None else state.value, queue, limit)
        return [row_info(row) for row in self._database.read(QUERIES["jobs"], params)]

    def search_jobs(
        self,
        state: State | None = None,
        queue: str | None = None,
        text: str | None = None,
        after: str | None = None,
        limit: int = 50,
    ) -> JobPage:
        before = _NO_CURSOR if after is None else seq_cursor(after)
        params = (None if state is None else state.value, queue, text or None, before, limit + 1)
        rows: list[Any] = []
        for query in ("search_jobs_by_id", "search_jobs_by_key") if text else ():
            rows = rows or self._database.read(QUERIES[query], params)
        rows = rows or self._database.read(QUERIES["search_jobs"], params)
        page = [row_info(row[:-1]) for row in rows[:limit]]
        return JobPage(page, str(rows[limit - 1][-1]) if len(rows) > limit else None)

    def oldest_ready(self) -> dict[str, float]:
        rows = self._database.read(QUERIES["oldest_ready"], (self._clock.now(),))
        return {queue: float(due) for queue, due in rows}

    def throughput(self, since: float) -> list[Throughput]:
        rows = self._database.read(QUERIES["throughput"], (since,))
        return [Throughput(float(m), str(q), int(s), int(f)) for m, q, s, f in rows]

    def cancel(self, job_id: str) -> bool:
        with self._database.write() as db:
            deleted = db.execute(QUERIES["cancel_deleting"], (job_id, self._result_ttl)).rowcount
            updated = db.execute(
                QUERIES["cancel"], (job_id, self._result_ttl, self._clock.now())
            ).rowcount
            if deleted + updated == 0:  # running? ask its worker
                updated = db.execute(
                    QUERIES["cancel_running"], (job_id, self._clock.now())
                ).rowcount
        return deleted + updated == 1

    def retry(self, job_id: str) -> bool:
        with self._database.write() as db:
            rows = fetch(db, QUERIES["retry_check"], (job_id,))
            if not rows or rows[0][0] not in (State.FAILED.value, State.CANCELLED.value):
                return False
            if rows[0][1]:
                return False  # another job holds the key now: two would run
            db.execute(QUERIES["retry"], (self._clock.now(), job_id))
        self._notify()
        return True

    def purge(self, state: State = State.FAILED, queue: str | None = None) -> int:
        if not state.finished:
            raise ValueError(
                f"purge deletes finished jobs (succeeded, failed, cancelled), not {state}"
            )
        return self._database.change(QUERIES["purge"], (state.value, queue))

    def prune(self) -> int:
        return self._database.change(QUERIES["prune"], (self._clock.now(),))
