"""The dashboard in a real headless Chromium, against a real server and worker.

``offload dashboard`` and ``offload worker`` run as processes on one
SQLite file; Playwright drives Debian's chromium (``executable_path``: it
never downloads a browser). Skips when chromium or Playwright is missing,
saying why; fails instead under CI.

``OFFLOAD_SCREENSHOTS=docs/dashboard`` keeps a screenshot of each view
there (the README's pictures); otherwise they go to the test's tmp folder.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from helpers import TESTS, free_port, wait_until
from offload._message import Progress
from servers import skip_or_fail

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WAIT_MS = 60_000
"""How long the browser waits for a change a loaded 2-core machine may be slow to show."""

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        skip_or_fail(f"no {CHROMIUM}: apt-get install chromium (the browser tests drive it)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        skip_or_fail('playwright is not installed: pip install -e ".[dev]"')
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    database = f"sqlite:///{tmp_path / 'jobs.db'}"
    monkeypatch.setenv("OFFLOAD_TEST_URL", database)
    sys.modules.pop("dashboard_tasks", None)
    yield database
    module = sys.modules.pop("dashboard_tasks", None)
    if module is not None:
        module.app.shutdown(wait=False)


@pytest.fixture
def processes(url: str, tmp_path: Path) -> Iterator[Any]:
    started: list[subprocess.Popen[str]] = []

    def start(*command: str) -> subprocess.Popen[str]:
        env = {**os.environ, "OFFLOAD_TEST_URL": url, "PYTHONPATH": str(TESTS)}
        process = subprocess.Popen(
            [sys.executable, "-m", "offload", *command],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)
        if process.stdout is not None:
            process.stdout.close()


def _serving(base: str) -> bool:
    try:
        with urllib.request.urlopen(base + "/api/counts", timeout=2) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False


def _shots(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("OFFLOAD_SCREENSHOTS") or tmp_path / "shots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def test_counts_drain_and_a_failed_job_is_retried_to_success(
    browser: Any, processes: Any, url: str, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    import dashboard_tasks as tasks

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    dashboard = processes("dashboard", "--app", "dashboard_tasks:app", "--port", str(port))
    assert wait_until(lambda: _serving(base), timeout=60), "the dashboard did not start"
    shots = _shots(tmp_path)
    marker = tmp_path / "payments-up"
    for queue in ("default", "mail"):
        tasks.nap.options(queue=queue).map([0.05] * 15)
    charge = tasks.charge("order-1017", str(marker))

    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.goto(base + "/")
    queued = page.locator('td a[data-queue="default"][data-state="queued"]')
    assert queued.inner_text() == "16"  # 15 naps and the charge
    page.evaluate("window.notReloaded = true")
    page.screenshot(path=str(shots / "overview.png"), full_page=True)

    processes("worker", "dashboard_tasks:app", "-c", "2", "--no-scheduler")
    # Waits go through Playwright's selectors: the page's CSP forbids the eval
    # that wait_for_function would need, as it should.
    total = page.locator('th[data-queue="*"][data-state="succeeded"]')
    expect(total).to_have_text("30", timeout=WAIT_MS)
    expect(queued).to_have_text("0")
    assert page.evaluate("window.notReloaded") is True  # live updates, no reload
    failed = page.locator('th[data-queue="*"][data-state="failed"]')
    expect(failed).to_have_text("1", timeout=WAIT_MS)
    expect(page.locator("[data-chart-total]").first).to_have_text(
        "30 succeeded, 1 failed", timeout=WAIT_MS
    )  # the charts follow too
    expect(page.locator(".changed")).to_have_count(0)  # the highlight of a change faded
    page.screenshot(path=str(shots / "overview-drained.png"), full_page=True)

    page.goto(base + "/jobs?q=dashboard_tasks.nap")
    assert page.locator("table.jobs tbody tr").count() == 30
    page.screenshot(path=str(shots / "jobs.png"), full_page=True)

    page.goto(base + "/dead")
    page.screenshot(path=str(shots / "dead-letters.png"), full_page=True)
    page.click(f"a[href='/jobs/{charge.id}']")
    assert "payment service unreachable for order order-1017" in page.inner_text("main")
    assert "Traceback" in page.inner_text("pre.traceback")
    page.screenshot(path=str(shots / "job-failed.png"), full_page=True)

    marker.touch()  # the cause is fixed: a retry succeeds
    page.click("button:has-text('Retry')")
    expect(page.locator("[data-job-state]")).to_have_text("succeeded", timeout=WAIT_MS)
    assert "'charged order-1017'" in page.inner_text("main")
    page.screenshot(path=str(shots / "job-retried.png"), full_page=True)
    job = tasks.app.inspector.job(charge.id)  # the broker agrees
    assert job is not None and job.state.value == "succeeded"

    page.goto(base + "/workers")
    expect(page.locator("td[data-pid]")).to_have_count(1)
    assert dashboard.poll() is None, "the dashboard is still serving"


def test_progress_goes_live_on_the_job_page_and_the_schedules_page_lists_ticks(
    browser: Any, processes: Any, url: str, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    import dashboard_tasks as tasks

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    processes("dashboard", "--app", "dashboard_tasks:app", "--port", str(port))
    assert wait_until(lambda: _serving(base), timeout=60), "the dashboard did not start"
    shots = _shots(tmp_path)
    marker = tmp_path / "rows-imported"
    crunch = tasks.crunch(10, str(marker))

    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.goto(base + f"/jobs/{crunch.id}")
    expect(page.locator("[data-progress-text]")).to_have_text("none reported")
    worker = processes("worker", "dashboard_tasks:app", "-c", "2")  # with its scheduler
    # The page reloads itself once the job runs, then follows its progress live.
    expect(page.locator("[data-progress-text]")).to_have_text("7 / 10 (70%)", timeout=WAIT_MS)
    expect(page.locator("[data-job-state]")).to_have_text("running")
    note = page.locator("[data-progress-note]")
    expect(note).to_have_text("importing <rows> of batch 7")  # text, not markup
    assert page.locator("[data-progress-note] rows").count() == 0
    bar = page.locator("progress[data-progress-bar]")
    assert bar.get_attribute("value") == "70.0" and bar.is_visible()
    page.screenshot(path=str(shots / "job-progress.png"), full_page=True)

    page.goto(base + "/jobs?state=running")
    expect(page.locator("[data-job-progress]")).to_contain_text("7 / 10 (70%)")
    listed = tasks.app.inspector.workers  # the registry says what it runs at a heartbeat
    assert wait_until(lambda: any(crunch.id in w.running for w in listed()), timeout=60)
    page.goto(base + "/workers")
    expect(page.locator("td[data-pid]")).to_have_text(str(worker.pid))
    expect(page.locator(f"td[data-running] a[href='/jobs/{crunch.id}']")).to_have_count(1)
    page.screenshot(path=str(shots / "workers.png"), full_page=True)

    page.goto(base + f"/jobs/{crunch.id}")
    marker.touch()  # the rows are in: the job finishes
    expect(page.locator("[data-job-state]")).to_have_text("succeeded", timeout=WAIT_MS)
    expect(page.locator("[data-progress-text]")).to_have_text("10 / 10 (100%)")

    store = tasks.app.broker.schedules
    assert wait_until(lambda: store.last_fired("dashboard_tasks.heartbeat"), timeout=60)
    page.goto(base + "/schedules")
    heartbeat = page.locator('tr[data-schedule="dashboard_tasks.heartbeat"]')
    expect(heartbeat).to_contain_text("every 2s")
    expect(heartbeat.locator("[data-last-run] a")).to_have_count(1)
    weekly = page.locator('tr[data-schedule="dashboard_tasks.weekly_report"]')
    expect(weekly).to_contain_text("cron 30 4 * * 1")
    expect(weekly).to_contain_text("Europe/Paris")
    expect(weekly.locator("[data-last-run]")).to_have_text("-")  # never due yet
    page.screenshot(path=str(shots / "schedules.png"), full_page=True)
    heartbeat.locator("[data-last-run] a").click()
    expect(page.locator("dl.fields")).to_contain_text("dashboard_tasks.heartbeat")


def test_a_running_job_is_cancelled_from_its_page(
    browser: Any, processes: Any, url: str, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    import dashboard_tasks as tasks

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    processes("dashboard", "--app", "dashboard_tasks:app", "--port", str(port))
    assert wait_until(lambda: _serving(base), timeout=60), "the dashboard did not start"
    marker = tmp_path / "never"  # the task waits for it: only a cancel ends it early
    crunch = tasks.crunch(10, str(marker))
    # A 3 s lease: the heartbeat that carries the request comes every second.
    processes("worker", "dashboard_tasks:app", "--no-scheduler", "--lease", "3")
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.goto(base + f"/jobs/{crunch.id}")
    expect(page.locator("[data-job-state]")).to_have_text("running", timeout=WAIT_MS)
    page.get_by_role("button", name="Cancel").click()
    expect(page.get_by_text("Asked to stop")).to_be_visible()
    expect(page.locator("[data-job-state]")).to_have_text("cancelled", timeout=WAIT_MS)
    job = tasks.app.job(crunch.id)
    assert job is not None and job.state.value == "cancelled"


def test_the_page_runs_with_no_content_security_policy_violation(
    browser: Any, processes: Any, url: str, tmp_path: Path
) -> None:
    import dashboard_tasks as tasks

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    processes("dashboard", "--app", "dashboard_tasks:app", "--port", str(port), "--read-only")
    assert wait_until(lambda: _serving(base), timeout=60), "the dashboard did not start"
    handle = tasks.nap(0.01)
    marker = tmp_path / "rows-imported"
    marker.touch()
    crunched = tasks.crunch(10, str(marker))
    (delivery,) = tasks.app.broker.claim(None, 1, 30.0)  # this test's worker: it reports
    assert delivery.message.id == handle.id
    (delivery,) = tasks.app.broker.claim(None, 1, 30.0)
    tasks.app.inspector.record_progress(delivery, Progress(3, 4, "<i>almost</i>", time.time()))
    page = browser.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    paths = ["/", "/jobs", f"/jobs/{handle.id}", f"/jobs/{crunched.id}", "/dead", "/workers"]
    for path in [*paths, "/schedules", "/jobs?state=running"]:
        page.goto(base + path)
        page.wait_for_load_state("networkidle")
    assert not problems, problems  # a CSP violation is a console error
    assert requests and all(r.startswith(base) for r in requests), requests
    assert page.locator("form[method=post]").count() == 0  # read-only: no actions
