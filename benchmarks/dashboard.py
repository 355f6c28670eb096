"""The dashboard's page loads with 1,000,000 jobs in SQLite.

    .venv/bin/python -m benchmarks.dashboard            # 1,000,000 jobs
    .venv/bin/python -m benchmarks.dashboard --jobs 100000

Fills a SQLite file through the broker's own ``enqueue`` (batches of
5,000), then gives the jobs a realistic mix of states with one UPDATE
(90% succeeded, 1% failed with an error, the rest queued): building the
fixture is not what is measured. Serves the dashboard with Uvicorn on a
free loopback port and times each page over HTTP (urllib, a new
connection per request): the median and the slowest of ``--rounds``
loads, server and client on the same 2-core machine. The file is kept
(``--db``) so a second run skips the fill.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

TASKS = ("mail.send", "reports.build", "billing.charge", "images.resize")
QUEUES = ("default", "mail", "reports")
BATCH = 5000


def fill(url: str, jobs: int) -> None:
    """``jobs`` jobs through the broker's enqueue, then a mix of states."""
    import offload
    from offload._message import Message, new_id

    app = offload.App(url, name="bench-dashboard")
    try:
        now = time.time()
        for start in range(0, jobs, BATCH):
            batch = [
                Message(
                    id=new_id(),
                    task=TASKS[i % len(TASKS)],
                    args=(),
                    kwargs={},
                    queue=QUEUES[i % len(QUEUES)],
                    key=f"order:{i}" if i % 50 == 0 else None,
                    created=now,
                    payload=b"[[%d], {}]" % i,
                )
                for i in range(start, min(start + BATCH, jobs))
            ]
            app.broker.enqueue(batch)
    finally:
        app.shutdown(wait=False)
    _mix_states(url.removeprefix("sqlite:///"), now)


def _mix_states(path: str, now: float) -> None:
    import sqlite3

    with sqlite3.connect(path) as db:
        db.execute(
            "UPDATE jobs SET state = 'succeeded', finished = ?1, expires = ?1 + 86400, "
            "result = '1' WHERE seq % 100 < 90",
            (now,),
        )
        db.execute(
            "UPDATE jobs SET state = 'failed', finished = ?1, attempt = 3, "
            "error_type = 'builtins.ConnectionError', error_message = 'service unreachable', "
            "error_traceback = 'Traceback (most recent call last):\n  ...' "
            "WHERE seq % 100 = 95",
            (now,),
        )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve(url: str) -> tuple[str, object]:
    import uvicorn

    import offload
    from offload.dashboard import create_app

    app = offload.App(url, name="bench-dashboard")
    port = _free_port()
    config = uvicorn.Config(create_app(app), host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return f"http://127.0.0.1:{port}", server


def timed(address: str, rounds: int) -> tuple[float, float, int]:
    """(median ms, slowest ms, bytes) of ``rounds`` loads of ``address``."""
    times = []
    size = 0
    for _ in range(rounds):
        start = time.perf_counter()
        with urllib.request.urlopen(address, timeout=60) as answer:
            size = len(answer.read())
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times), max(times), size


def pages(url: str, jobs: int) -> list[tuple[str, str]]:
    """The pages a person opens, with a job id, a key and cursors found in this store."""
    import sqlite3

    with sqlite3.connect(url.removeprefix("sqlite:///")) as db:
        (job_id,) = db.execute("SELECT id FROM jobs WHERE seq = ?", (jobs // 2,)).fetchone()
    return [
        ("overview", "/"),
        ("live counts (JSON)", "/api/counts"),
        ("jobs, first page", "/jobs"),
        ("jobs, a page half-way down", f"/jobs?after={jobs // 2}"),
        ("jobs, the last page", "/jobs?after=40"),
        ("failed jobs, first page", "/jobs?state=failed"),
        ("dead letters, a page half-way down", f"/dead?after={jobs // 2}"),
        ("queued jobs of one queue", "/jobs?state=queued&queue=mail"),
        ("search: task name", "/jobs?q=billing."),
        ("search: no job matches (a full scan)", "/jobs?q=nothing.matches"),
        ("search: job id", f"/jobs?q={job_id}"),
        ("search: key", f"/jobs?q=order:{(jobs // 100) * 50}"),
        ("one job", f"/jobs/{job_id}"),
        ("/metrics", "/metrics"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--db", type=Path, help="SQLite file (kept; filled when absent)")
    options = parser.parse_args()
    path = options.db or Path(tempfile.gettempdir()) / f"offload-dash-{options.jobs}.db"
    url = f"sqlite:///{path}"
    if not path.exists():
        start = time.perf_counter()
        fill(url, options.jobs)
        print(f"filled {options.jobs:,} jobs in {time.perf_counter() - start:.1f} s: {path}")
    base, server = serve(url)
    print(f"{options.jobs:,} jobs in SQLite; median and slowest of {options.rounds} loads")
    print("| page | median ms | slowest ms | bytes |\n|---|---:|---:|---:|")
    for name, page in pages(url, options.jobs):
        median, worst, size = timed(base + page, options.rounds)
        print(f"| {name} | {median:.0f} | {worst:.0f} | {size:,} |")
    server.should_exit = True  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()
