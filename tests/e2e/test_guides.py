"""The migration guides' examples run as written, each as its page tells a reader to run it.

docs/guides/*.md include these files (``--8<--`` snippets): the seed
article's Celery, RQ and Huey examples, Dramatiq's actors, the standard
library's executor example and the seed blog's ``background`` cell. The
durable ones run against a real ``offload worker`` process on the broker
they name (SQLite for Celery and Huey, Redis for RQ and Dramatiq, in a
namespace of the test's own), from a temporary copy of the folder.
"""

from __future__ import annotations

import functools
import http.server
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from helpers import TESTS
from servers import scratch_url

DOCS = TESTS.parent / "docs"
EXAMPLES = DOCS / "guides" / "examples"
BIN = Path(sys.executable).parent
TIMEOUT = 60


def examples(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A copy of the examples folder, and an environment without OFFLOAD_ settings."""
    folder = tmp_path / "examples"
    shutil.copytree(EXAMPLES, folder)
    env = {k: v for k, v in os.environ.items() if not k.startswith("OFFLOAD_")}
    return folder, env


def run(command: list[str], cwd: Path, env: dict[str, str]) -> str:
    done = subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT, check=False
    )
    assert done.returncode == 0, f"{command} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@contextmanager
def worker(target: str, cwd: Path, env: dict[str, str]) -> Iterator[Path]:
    """A real ``offload worker TARGET`` in ``cwd``; yields its log file, stopped with SIGTERM."""
    log = cwd / f"worker-{target.replace(':', '-')}.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [str(BIN / "offload"), "worker", target],
            cwd=cwd,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            yield log
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=TIMEOUT)
    output = log.read_text()
    assert process.returncode == 0, output
    assert "stopped" in output, output


@contextmanager
def web_page(folder: Path, name: str, text: str) -> Iterator[str]:
    """``text`` served over HTTP on 127.0.0.1 (the network is closed to tests): its URL."""
    folder.mkdir()
    (folder / name).write_text(text)
    handler = functools.partial(QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, name="guides-http", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/{name}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=TIMEOUT)


def eventually(predicate: Callable[[], bool], timeout: float) -> bool:
    """Poll ``predicate`` every 0.1 s (it reads a log file) until true or ``timeout``."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base's name
        pass


def test_the_background_cell_runs_with_the_drop_in(tmp_path: Path) -> None:
    folder, env = examples(tmp_path)
    output = run([sys.executable, "background_work.py"], folder, env)
    found = re.fullmatch(r"100 calls of bg_work: 100 in ([0-9.]+) s\n", output)
    assert found, output
    # 100 one-second calls on 110 threads: about 1 s, where one after another takes 100 s.
    assert float(found[1]) < 30, output


def test_the_executor_example_runs_on_the_process_and_thread_pools(tmp_path: Path) -> None:
    folder, env = examples(tmp_path)
    lines = run([sys.executable, "threadpool_primes.py"], folder, env).splitlines()
    assert lines[:6] == [
        "112272535095293 is prime: True",
        "112582705942171 is prime: True",
        "112272535095293 is prime: True",
        "115280095190773 is prime: True",
        "115797848077099 is prime: True",
        "1099726899285419 is prime: False",
    ]
    assert sorted(lines[6:]) == sorted(
        [
            "1099726899285419 has 16 digits",
            "112272535095293 has 15 digits",
            "112582705942171 has 15 digits",
            "115280095190773 has 15 digits",
            "115797848077099 has 15 digits",
        ]
    )


@pytest.mark.parametrize("broker", ["sqlite", "redis"])
def test_the_celery_example_sends_the_email_through_a_worker(tmp_path: Path, broker: str) -> None:
    folder, env = examples(tmp_path)
    with scratch_url(broker, tmp_path) as url:
        env["OFFLOAD_URL"] = url  # sqlite: a file of the test's; redis: a namespace of its own
        with worker("celery_send_email:app", folder, env) as log:
            output = run([sys.executable, "celery_send_email.py"], folder, env).splitlines()
            job = output[0].removeprefix("job ")
            assert output[1:] == ["Email sent to user@example.com", "succeeded"], output
            show = [str(BIN / "offload"), "show", job, "--app", "celery_send_email:app"]
            shown = run(show, folder, env)
            assert "succeeded" in shown and "Email sent to user@example.com" in shown, shown
        assert "Sending email to user@example.com: Welcome!" in log.read_text()


def test_the_rq_example_counts_the_words_of_a_page_through_a_worker(tmp_path: Path) -> None:
    folder, env = examples(tmp_path)
    words = "background work " * 50 + "done"
    with (
        scratch_url("redis", tmp_path) as url,
        web_page(tmp_path / "site", "long-article", words) as page,
    ):
        env["OFFLOAD_URL"] = url
        with worker("rq_count_words:app", folder, env) as log:
            output = run([sys.executable, "rq_count_words.py", page], folder, env)
        assert output.splitlines()[-1] == f"{page} has 101 words", output
        assert f"Processing URL: {page}" in log.read_text()


def test_the_huey_periodic_task_ticks_under_a_worker(tmp_path: Path) -> None:
    folder, env = examples(tmp_path)
    with worker("huey_periodic:app", folder, env) as log:
        # every=1: a tick each second; two ran within a few seconds of the start.
        assert eventually(lambda: log.read_text().count("heartbeat at ") >= 2, timeout=20), (
            log.read_text()
        )
        # The program runs the nightly task once, off schedule.
        assert run([sys.executable, "huey_periodic.py"], folder, env) == "backup done\n"
        listed = run([str(BIN / "offload"), "schedules", "--app", "huey_periodic:app"], folder, env)
    rows = {line.split()[0]: line for line in listed.splitlines()[1:]}
    assert "cron '0 3 * * *' (UTC)" in rows["huey_periodic.nightly_backup"], listed
    assert "every 1s" in rows["huey_periodic.heartbeat"], listed
    assert "succeeded" in rows["huey_periodic.heartbeat"], listed
    assert "backing up" in log.read_text()


def test_the_dramatiq_example_runs_its_actors_and_workflows_through_a_worker(
    tmp_path: Path,
) -> None:
    folder, env = examples(tmp_path)
    with scratch_url("redis", tmp_path) as url:
        env["OFFLOAD_URL"] = url
        with worker("dramatiq_count_words:app", folder, env):
            output = run([sys.executable, "dramatiq_count_words.py"], folder, env)
    assert output.splitlines() == ["3", "[4, 2, 3]", "6", "9"], output


GUIDES = {
    "from-background.md": "background_work.py",
    "from-threadpoolexecutor.md": "threadpool_primes.py",
    "from-celery.md": "celery_send_email.py",
    "from-rq.md": "rq_count_words.py",
    "from-huey.md": "huey_periodic.py",
    "from-dramatiq.md": "dramatiq_count_words.py",
}


def test_each_guide_includes_the_example_this_file_runs() -> None:
    assert sorted(p.name for p in (DOCS / "guides").glob("*.md")) == sorted(GUIDES)
    assert sorted(p.name for p in EXAMPLES.glob("*.py")) == sorted(GUIDES.values())
    for page, example in GUIDES.items():
        text = (DOCS / "guides" / page).read_text()
        assert f'--8<-- "docs/guides/examples/{example}"' in text, page


def test_no_page_shows_a_snippet_line_instead_of_its_file() -> None:
    # ruff format reads a ```python fence as Python: unguarded, it rewrites
    # --8<-- "file" as --8 < --"file", which the snippets extension no longer
    # sees, and the page shows that line. <!-- fmt: off --> guards the fence.
    for page in DOCS.rglob("*.md"):
        lines = page.read_text().splitlines()
        assert not any(line.startswith("--8 < --") for line in lines), page
        for n, line in enumerate(lines):
            if line.startswith("--8<--") and lines[n - 1].startswith("```py"):
                assert lines[n - 2] == "<!-- fmt: off -->", f"{page}:{n + 1}: unguarded snippet"
