"""What the pages show, read from the broker's inspector (plain values, no HTTP here)."""

from __future__ import annotations

import datetime
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .._brokers._base import Inspector, JobPage, JobSearch, ProgressStore
from .._errors import PayloadRejected
from .._message import ErrorInfo, JobInfo, Progress, State
from .._serializers import Serializer, decode_call

PAGE = 50
"""Jobs per page."""
FALLBACK_LIMIT = 500
"""Jobs an inspector without ``JobSearch`` is asked for: the newest, filtered here."""
VALUE_WIDTH = 2000
"""Characters of one decoded argument or result shown before cutting."""

COLUMNS = (
    State.QUEUED,
    State.RUNNING,
    State.RETRYING,
    State.FAILED,
    State.SUCCEEDED,
    State.CANCELLED,
)


@dataclass
class QueueRow:
    """One queue's line of the overview."""

    name: str
    counts: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.counts.values())


@dataclass
class Overview:
    rows: list[QueueRow]
    totals: dict[str, int] = field(default_factory=dict)


def overview(inspector: Inspector) -> Overview:
    """Jobs per queue and state, and the totals."""
    counts = inspector.counts()
    rows = [
        QueueRow(queue, {s.value: counts[queue].get(s, 0) for s in COLUMNS})
        for queue in sorted(counts)
    ]
    totals = {s.value: sum(row.counts[s.value] for row in rows) for s in COLUMNS}
    return Overview(rows, totals)


def counts_json(inspector: Inspector) -> dict[str, dict[str, int]]:
    """The overview's numbers for the page's live updates: queue -> state -> count."""
    view = overview(inspector)
    data = {row.name: row.counts for row in view.rows}
    data["*"] = view.totals
    return data


@dataclass
class Listing:
    """A page of jobs, and how to get the next one."""

    jobs: list[JobInfo]
    cursor: str | None
    paged: bool
    """False: the broker lists only its newest jobs (no cursor paging)."""


def listing(
    inspector: Inspector,
    state: State | None,
    queue: str | None,
    text: str | None,
    after: str | None,
) -> Listing:
    """One page of jobs in ``state`` of ``queue`` matching ``text``, newest first."""
    if isinstance(inspector, JobSearch):
        page: JobPage = inspector.search_jobs(state, queue, text, after, PAGE)
        return Listing(page.jobs, page.cursor, True)
    jobs = inspector.jobs(state, queue, limit=FALLBACK_LIMIT)
    if text:
        jobs = [j for j in jobs if text in (j.id, j.key) or j.task.startswith(text)]
    return Listing(jobs[:PAGE], None, False)


@dataclass
class Value:
    """One decoded argument or the result, as text to show escaped."""

    name: str
    text: str


def arguments(serializer: Serializer | None, payload: bytes | None) -> tuple[list[Value], str]:
    """The decoded arguments, or a note saying why there are none to show."""
    if payload is None or serializer is None:
        return [], "no arguments stored"
    try:
        args, kwargs = decode_call(serializer, payload)
    except PayloadRejected as error:
        return [], f"cannot be decoded here ({error}); {len(payload)} bytes stored"
    values = [Value(f"args[{i}]", _shown(value)) for i, value in enumerate(args)]
    values += [Value(f"{key}=", _shown(value)) for key, value in kwargs.items()]
    return values, "" if values else "none"


def result(serializer: Serializer | None, job: JobInfo) -> str | None:
    """The decoded result of a succeeded job; ``None`` when there is none to show."""
    if job.state is not State.SUCCEEDED or job.result is None or serializer is None:
        return None
    try:
        return _shown(serializer.decode(job.result))
    except PayloadRejected as error:
        return f"cannot be decoded here ({error}); {len(job.result)} bytes stored"


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= VALUE_WIDTH else text[: VALUE_WIDTH - 3] + "..."


def error_title(error: ErrorInfo | None) -> str:
    """``ValueError: first line`` of a job's last error; empty for none."""
    if error is None:
        return ""
    kind = error.type.rpartition(".")[2]
    first = error.message.splitlines()[0] if error.message else ""
    return f"{kind}: {first}" if first else kind


def when(epoch: float | None) -> str:
    """UTC time to the second; ``-`` for none."""
    if not epoch:
        return "-"
    moment = datetime.datetime.fromtimestamp(epoch, tz=datetime.timezone.utc)
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def ago(epoch: float | None, now: float | None = None) -> str:
    """How long ago (or ahead, for an ETA), in words a glance reads: ``3m ago``, ``in 20s``."""
    if not epoch:
        return ""
    delta = (time.time() if now is None else now) - epoch
    seconds = abs(delta)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            amount = f"{int(seconds // size)}{unit}"
            break
    else:
        amount = f"{int(seconds)}s"
    return f"{amount} ago" if delta >= 0 else f"in {amount}"


def duration(job: JobInfo) -> str:
    """Seconds from creation to the end, for a finished job."""
    if job.finished is None or not job.created:
        return "-"
    return f"{max(0.0, job.finished - job.created):.3f} s"


def state_names(states: Sequence[State] = tuple(State)) -> list[str]:
    return [s.value for s in states]


def job(inspector: Inspector, job_id: str) -> JobInfo | None:
    """A job with the progress it last reported, as ``app.job`` reads it."""
    info = inspector.job(job_id)
    if info is not None and isinstance(inspector, ProgressStore):
        info.progress = inspector.progress(job_id)
    return info


def running_progress(inspector: Inspector, jobs: Sequence[JobInfo]) -> dict[str, ProgressView]:
    """The progress of the running jobs among ``jobs``: one read per running job."""
    if not isinstance(inspector, ProgressStore):
        return {}
    found = {j.id: inspector.progress(j.id) for j in jobs if j.state is State.RUNNING}
    return {job_id: progress_view(p) for job_id, p in found.items() if p is not None}


@dataclass
class ProgressView:
    """A job's progress as the page shows it (and its JSON, for the live update)."""

    done: float
    total: float | None
    percent: float | None
    """0 to 100; ``None`` without a total."""
    text: str
    """``7 / 10 (70%)``, or ``7 done`` without a total."""
    note: str
    at: str
    """When it was reported, UTC to the second."""
    ago: str

    def json(self) -> dict[str, Any]:
        return {
            "done": self.done,
            "total": self.total,
            "percent": self.percent,
            "text": self.text,
            "note": self.note,
            "at": self.at,
            "ago": self.ago,
        }


def progress_view(progress: Progress) -> ProgressView:
    fraction = progress.fraction
    if fraction is None:
        text = f"{progress.done:g} done"
        percent = None
    else:
        percent = round(100 * fraction, 1)
        text = f"{progress.done:g} / {progress.total:g} ({percent:g}%)"
    return ProgressView(
        done=progress.done,
        total=progress.total if fraction is not None else None,
        percent=percent,
        text=text,
        note=progress.note or "",
        at=when(progress.at),
        ago=ago(progress.at),
    )
