"""``offload status | jobs | show | retry | cancel | purge`` against a real SQLite app."""

from __future__ import annotations

import importlib
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest
from click.testing import CliRunner, Result

import offload
from offload import State
from offload.cli import main

WAIT = 20.0
APP = ["--app", "inspect_tasks:app"]

TASKS = '''\
"""Tasks of the CLI tests: imported by the test, and by `--app inspect_tasks:app`."""

import offload

app = offload.App({url!r}, name="cli-inspect")


@app.task
def add(a, b):
    return a + b


@app.task
def boom(message):
    raise ValueError(message)


@app.task(queue="mail")
def send(to, *, subject=""):
    return to


def plain(x):
    return x
'''


@dataclass
class Jobs:
    """A SQLite app holding a job in each of several states, and their ids."""

    url: str
    tasks: ModuleType
    succeeded: str
    dead: str
    queued: str
    mail: str

    @property
    def app(self) -> offload.App:
        app: offload.App = self.tasks.app
        return app

    def state(self, job_id: str) -> State | None:
        job = self.app.job(job_id)
        return None if job is None else job.state


@pytest.fixture
def jobs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Jobs]:
    """Two jobs run by a worker (one succeeded, one dead), then two left queued."""
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    (tmp_path / "inspect_tasks.py").write_text(TASKS.format(url=url))
    monkeypatch.syspath_prepend(str(tmp_path))  # sys.path is restored afterwards
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("OFFLOAD_URL", raising=False)
    sys.modules.pop("inspect_tasks", None)
    tasks = importlib.import_module("inspect_tasks")
    try:
        yield _fill(url, tasks)
    finally:
        tasks.app.shutdown(wait=False)
        sys.modules.pop("inspect_tasks", None)


def _fill(url: str, tasks: ModuleType) -> Jobs:
    succeeded, dead = tasks.add(2, 3), tasks.boom("kaput")
    worker = tasks.app.worker(queues=["default"])
    worker.start()
    try:
        assert succeeded.result(timeout=WAIT) == 5
        with pytest.raises(ValueError, match="kaput"):
            dead.result(timeout=WAIT)
    finally:
        worker.stop()
    mail = tasks.send("a@example.com", subject="welcome")
    queued = tasks.add(4, 4)  # the newest job
    return Jobs(url, tasks, succeeded.id, dead.id, queued.id, mail.id)


def run(*args: str, columns: int = 200, answer: str | None = None) -> Result:
    """``offload ARGS`` in a terminal ``columns`` wide."""
    return CliRunner().invoke(main, list(args), input=answer, env={"COLUMNS": str(columns)})


def cells(output: str, first: str) -> list[str]:
    """The cells of the table row whose first cell is ``first``."""
    for line in output.splitlines():
        row = re.split(r"\s{2,}", line.strip())
        if row[0] == first:
            return row
    raise AssertionError(f"no row {first!r} in:\n{output}")


# -- status and jobs ------------------------------------------------------------------


def test_status_counts_jobs_per_queue_and_state(jobs: Jobs) -> None:
    result = run("status", *APP)
    assert result.exit_code == 0, result.output
    header = ["QUEUE", "QUEUED", "RUNNING", "RETRYING", "SUCCEEDED", "FAILED", "CANCELLED"]
    assert cells(result.output, "QUEUE") == [*header, "TOTAL"]
    assert cells(result.output, "default") == ["default", "1", "0", "0", "1", "1", "0", "3"]
    assert cells(result.output, "mail") == ["mail", "1", "0", "0", "0", "0", "0", "1"]
    assert cells(result.output, "TOTAL") == ["TOTAL", "2", "0", "0", "1", "1", "0", "4"]
    lines = result.output.splitlines()
    assert len({len(line) for line in lines}) == 1  # numbers right-aligned under headers


def test_jobs_state_failed_lists_the_dead_letter_set(jobs: Jobs) -> None:
    result = run("jobs", "--state", "failed", *APP)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert len(lines) == 2  # the header and the one dead job
    header = re.split(r"\s{2,}", lines[0])
    assert header == ["ID", "TASK", "QUEUE", "STATE", "ATTEMPT", "CREATED", "LAST ERROR"]
    row = cells(result.output, jobs.dead)
    assert row[1:5] == ["inspect_tasks.boom", "default", "failed", "1"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", row[5])
    assert row[6] == "ValueError: kaput"
    # Aligned: each cell starts under its header.
    assert lines[1].index("ValueError") == lines[0].index("LAST ERROR")
    assert lines[1].index("inspect_tasks.boom") == lines[0].index("TASK")


def test_jobs_lists_newest_first_and_filters_by_queue_and_limit(jobs: Jobs) -> None:
    everything = run("jobs", *APP)
    assert everything.exit_code == 0, everything.output
    ids = [line.split()[0] for line in everything.output.splitlines()[1:]]
    assert ids == [jobs.queued, jobs.mail, jobs.dead, jobs.succeeded]
    assert cells(everything.output, jobs.succeeded)[3:5] == ["succeeded", "1"]
    assert cells(everything.output, jobs.queued)[3:5] == ["queued", "0"]

    mail = run("jobs", "--queue", "mail", *APP)
    assert [line.split()[0] for line in mail.output.splitlines()[1:]] == [jobs.mail]
    newest = run("jobs", "--limit", "1", *APP)
    assert [line.split()[0] for line in newest.output.splitlines()[1:]] == [jobs.queued]
    none = run("jobs", "--state", "running", *APP)
    assert none.exit_code == 0
    assert none.output.strip() == "no running jobs"


def test_jobs_fit_an_80_column_terminal(jobs: Jobs) -> None:
    result = run("jobs", *APP, columns=80)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert max(len(line) for line in lines) <= 80, result.output
    # Two lines a job: id, state, attempt, created, queue; then task and last error.
    at = lines.index(next(line for line in lines if line.startswith(jobs.dead)))
    assert lines[at].split() == [jobs.dead, "failed", "1", lines[at].split()[3], "default"]
    assert lines[at + 1].split() == ["inspect_tasks.boom", "ValueError:", "kaput"]


# -- show -----------------------------------------------------------------------------


def test_show_a_dead_job_has_its_arguments_and_the_full_traceback(jobs: Jobs) -> None:
    result = run("show", jobs.dead, *APP)
    assert result.exit_code == 0, result.output
    out = result.output
    assert f"id:       {jobs.dead}" in out
    assert "task:     inspect_tasks.boom" in out
    assert "state:    failed" in out
    assert "attempts: 1" in out
    assert "args[0] = 'kaput'" in out
    assert "last error: ValueError: kaput" in out
    assert "Traceback (most recent call last):" in out
    assert "raise ValueError(message)" in out  # the worker's source line
    assert "result:" not in out


def test_show_a_succeeded_job_decodes_its_arguments_and_result(jobs: Jobs) -> None:
    result = run("show", jobs.succeeded, *APP)
    assert result.exit_code == 0, result.output
    assert "args[0] = 2\n  args[1] = 3\n" in result.output
    assert "result:   5" in result.output
    assert "last error" not in result.output

    mail = run("show", jobs.mail, *APP)
    assert "args[0] = 'a@example.com'" in mail.output
    assert "kwargs['subject'] = 'welcome'" in mail.output


def test_show_says_when_it_cannot_decode_the_arguments(jobs: Jobs) -> None:
    pickled = offload.App(
        jobs.url,
        serializer="pickle",
        pickle_key=b"k" * 32,
        name="pickled",
        include=[jobs.tasks.__name__],
    )
    try:
        job_id = pickled.enqueue(jobs.tasks.plain, 7).id
    finally:
        pickled.shutdown(wait=False)
    result = run("show", job_id, *APP)  # a JSON app: the pickle payload is not its own
    assert result.exit_code == 0, result.output
    assert "arguments: cannot be decoded here" in result.output
    size = len(jobs.app.job(job_id).payload or b"")  # type: ignore[union-attr]
    assert f"raw payload: {size} bytes" in result.output


def test_show_an_unknown_id_exits_1(jobs: Jobs) -> None:
    result = run("show", "0123456789abcdef01234567", *APP)
    assert result.exit_code == 1
    assert "no job 0123456789abcdef01234567" in result.output


# -- retry, cancel, purge -------------------------------------------------------------


def test_retry_puts_a_dead_job_back_in_the_queue(jobs: Jobs) -> None:
    result = run("retry", jobs.dead, *APP)
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"re-queued 1 job: {jobs.dead}"
    job = jobs.app.job(jobs.dead)
    assert job is not None
    assert (job.state, job.attempt, job.error) == (State.QUEUED, 0, None)

    again = run("retry", jobs.dead, *APP)  # queued now: nothing to retry
    assert again.exit_code == 1
    assert "is queued: only failed or cancelled jobs can be retried" in again.output
    unknown = run("retry", "nope", *APP)
    assert unknown.exit_code == 1
    assert "no job nope" in unknown.output


def test_retry_all_dead_requeues_every_failed_job(jobs: Jobs) -> None:
    result = run("retry", "--all-dead", *APP)
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "re-queued 1 failed job"
    assert jobs.state(jobs.dead) is State.QUEUED
    assert run("retry", "--all-dead", *APP).output.strip() == "re-queued 0 failed jobs"


@pytest.mark.parametrize(
    "args", [["retry"], ["retry", "some-id", "--all-dead"], ["retry", "x", "--queue", "q"]]
)
def test_retry_needs_one_id_or_all_dead(jobs: Jobs, args: list[str]) -> None:
    result = run(*args, *APP)
    assert result.exit_code == 2, result.output


def test_cancel_a_queued_job_and_not_a_finished_one(jobs: Jobs) -> None:
    result = run("cancel", jobs.mail, *APP)
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"cancelled job {jobs.mail}"
    assert jobs.state(jobs.mail) is State.CANCELLED

    finished = run("cancel", jobs.succeeded, *APP)
    assert finished.exit_code == 1
    assert "is succeeded already" in finished.output
    assert run("cancel", "nope", *APP).exit_code == 1


def test_purge_dead_with_yes_deletes_the_dead_letter_set(jobs: Jobs) -> None:
    result = run("purge", "--state", "dead", "--yes", *APP)
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "deleted 1 failed job"
    assert jobs.app.job(jobs.dead) is None
    assert jobs.state(jobs.succeeded) is State.SUCCEEDED  # other states untouched
    assert cells(run("status", *APP).output, "TOTAL")[5] == "0"
    empty = run("purge", "--state", "dead", "--yes", *APP)
    assert empty.exit_code == 0
    assert "no failed jobs" in empty.output


def test_purge_asks_before_deleting(jobs: Jobs) -> None:
    declined = run("purge", "--state", "succeeded", "--queue", "default", *APP, answer="n\n")
    assert "Delete 1 succeeded job in queue default? [y/N]" in declined.output
    assert declined.exit_code == 1  # aborted
    assert jobs.state(jobs.succeeded) is State.SUCCEEDED

    confirmed = run("purge", "--state", "succeeded", *APP, answer="y\n")
    assert confirmed.exit_code == 0, confirmed.output
    assert "deleted 1 succeeded job" in confirmed.output
    assert jobs.app.job(jobs.succeeded) is None


# -- which app ------------------------------------------------------------------------


def test_offload_url_names_the_broker_without_app(
    jobs: Jobs, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OFFLOAD_URL", jobs.url)
    result = run("jobs", "--state", "failed")
    assert result.exit_code == 0, result.output
    assert cells(result.output, jobs.dead)[1] == "inspect_tasks.boom"
    show = run("show", jobs.dead)
    assert "args[0] = 'kaput'" in show.output


def test_without_app_or_offload_url_the_error_says_what_to_give(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OFFLOAD_URL", raising=False)
    result = run("status")
    assert result.exit_code == 2
    assert "--app module:app" in result.output
    assert "OFFLOAD_URL" in result.output


def test_an_in_process_app_has_nothing_to_inspect(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OFFLOAD_URL", "memory://")
    result = run("jobs")
    assert result.exit_code == 2
    assert "in-process" in result.output


def test_a_bad_offload_url_is_a_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OFFLOAD_URL", "nosuch://x")
    result = run("status")
    assert result.exit_code == 2
    assert "unknown broker scheme 'nosuch'" in result.output
