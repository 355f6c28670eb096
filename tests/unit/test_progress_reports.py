"""``offload.current().progress``: checked values, heard by the handle in this process."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest

import offload
from helpers import wait_until
from offload import JobContext, Progress


@pytest.fixture
def app() -> Iterator[offload.App]:
    app = offload.App(threads=4)
    yield app
    app.shutdown(wait=False, cancel_pending=True)


def test_a_thread_task_s_progress_reaches_its_handle_while_it_runs(app: offload.App) -> None:
    release = threading.Event()

    @app.task
    def copy(rows: int) -> int:
        job = offload.current()
        for done in range(rows + 1):
            job.progress(done, rows, "rows copied")
        release.wait(10)
        return rows

    handle = copy(50)
    assert wait_until(lambda: handle.progress is not None and handle.progress.done == 50)
    progress = handle.progress
    assert progress is not None
    assert (progress.total, progress.note, progress.fraction) == (50.0, "rows copied", 1.0)
    assert not handle.done()
    release.set()
    assert handle.result(timeout=5) == 50


def test_an_async_task_reports_progress_too(app: offload.App) -> None:
    @app.task
    async def crawl(pages: int) -> int:
        for page in range(1, pages + 1):
            offload.current().progress(page, pages)
            await asyncio.sleep(0)
        return pages

    handle = crawl(7)
    assert handle.result(timeout=5) == 7
    assert handle.progress == Progress(7.0, 7.0, None, handle.progress.at)  # type: ignore[union-attr]


def test_a_handle_of_a_task_that_reports_nothing_has_no_progress(app: offload.App) -> None:
    @app.task
    def quiet() -> int:
        return 1

    handle = quiet()
    assert handle.result(timeout=5) == 1
    assert handle.progress is None


@pytest.mark.parametrize(
    ("done", "total", "note", "error"),
    [
        ("3", None, None, TypeError),
        (float("nan"), None, None, TypeError),
        (True, None, None, TypeError),
        (1, 0, None, ValueError),
        (1, -5, None, ValueError),
        (1, float("inf"), None, ValueError),
        (1, 2, 42, TypeError),
    ],
)
def test_a_bad_progress_value_is_refused_saying_what_it_takes(
    done: object, total: object, note: object, error: type[Exception]
) -> None:
    job = JobContext("id", "task", 1, "default")
    with pytest.raises(error, match=r"progress\("):
        job.progress(done, total, note)  # type: ignore[arg-type]


class Heard:
    """Job services that keep what the job reported (the runner's do more)."""

    def __init__(self, heard: list[Progress]) -> None:
        self.heard = heard

    def report(self, _: object, progress: Progress) -> None:
        self.heard.append(progress)

    def recorded(self, _: object, name: str) -> tuple[bool, object]:
        return False, None

    def record(self, _: object, name: str, value: object) -> None:
        pass


def test_a_long_note_is_cut_and_made_storable() -> None:
    heard: list[Progress] = []
    job = JobContext("id", "task", 1, "default", services=Heard(heard))
    job.progress(1, note="x" * 5000 + "\x00")
    job.progress(2, note="bad \udcff byte")
    assert heard[0].note == "x" * 1000
    assert heard[1].note == "bad \\udcff byte"


def test_wait_returns_whether_the_call_ended_and_raises_nothing(app: offload.App) -> None:
    release = threading.Event()

    @app.task
    def held() -> None:
        release.wait(10)
        raise ValueError("the outcome is result()'s to raise")

    handle = held()
    assert handle.wait(timeout=0.05, progress=True) is False  # stderr is no terminal here
    release.set()
    assert handle.wait(timeout=5) is True
    with pytest.raises(ValueError, match="result"):
        handle.result()
