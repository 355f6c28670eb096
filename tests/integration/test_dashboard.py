"""The dashboard over HTTP (Starlette's test client) on a real SQLite broker.

Pages, search and paging, the actions (retry, cancel, retry-all, purge) and
the security rules: CSRF, the Content-Security-Policy, the password,
read-only, escaping, and the refusal to bind beyond loopback without a
password.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("starlette", reason="the dashboard extra is not installed")

from starlette.testclient import TestClient

import offload
from helpers import TESTS, wait_until
from offload._brokers._base import Fired, Lease, ProgressStore, Scheduling, WorkerInfo
from offload._message import ErrorInfo, Outcome, Progress, State
from offload.dashboard import CONTENT_SECURITY_POLICY, create_app

BOOM = ErrorInfo("builtins.ValueError", "boom <b>bold</b>", "Traceback: line 1\nValueError")


@pytest.fixture
def app(tmp_path: Path) -> Iterator[offload.App]:
    application = offload.App(f"sqlite:///{tmp_path / 'jobs.db'}", name="dash")
    yield application
    application.shutdown(wait=False)


def send(to: str) -> str:
    return to


def _task(app: offload.App) -> offload.Task[[str], str]:
    return app.task(name="mail.send")(send)


def _fail(app: offload.App, job_id: str) -> None:
    """Claim ``job_id`` (the oldest claimable) and record it as failed."""
    (delivery,) = app.broker.claim(None, 1, 30.0)
    assert delivery.message.id == job_id
    app.broker.ack(delivery, Outcome(State.FAILED, error_info=BOOM))


def _client(app: offload.App, **options) -> TestClient:  # type: ignore[no-untyped-def]
    return TestClient(create_app(app, **options))


def _csrf(page: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', page)
    assert found, "the page has no CSRF field"
    return found.group(1)


def test_overview_counts_jobs_per_queue_and_state(app: offload.App) -> None:
    send = _task(app)
    first = send("a@example.com")
    send.options(queue="mail")("b@example.com")
    _fail(app, first.id)
    client = _client(app)
    page = client.get("/")
    assert page.status_code == 200
    assert "Overview" in page.text and "mail" in page.text
    counts = client.get("/api/counts").json()
    assert counts["default"]["failed"] == 1
    assert counts["mail"]["queued"] == 1
    assert counts["*"]["queued"] == 1 and counts["*"]["failed"] == 1


def test_every_answer_has_a_strict_content_security_policy(app: offload.App) -> None:
    client = _client(app)
    paths = ("/", "/jobs", "/dead", "/workers", "/schedules", "/static/dashboard.js", "/nowhere")
    for path in paths:
        headers = client.get(path).headers
        assert headers["content-security-policy"] == CONTENT_SECURITY_POLICY, path
        assert headers["x-frame-options"] == "DENY"
    assert "script-src 'self'" in CONTENT_SECURITY_POLICY
    assert "unsafe-inline" not in CONTENT_SECURITY_POLICY


def test_the_page_loads_nothing_from_another_host(app: offload.App) -> None:
    page = _client(app).get("/").text
    sources = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert sources and all(s.startswith("/") for s in sources), sources
    assert "<script>" not in page and "style=" not in page  # nothing inline


def test_arguments_and_errors_are_shown_escaped(app: offload.App) -> None:
    send = _task(app)
    handle = send("<script>alert(1)</script>")
    _fail(app, handle.id)
    page = _client(app).get(f"/jobs/{handle.id}").text
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "boom &lt;b&gt;bold&lt;/b&gt;" in page
    assert "Traceback: line 1" in page


def test_a_job_page_shows_arguments_result_and_timing(app: offload.App) -> None:
    send = _task(app)
    handle = send.options(key="user:42")("c@example.com")
    (delivery,) = app.broker.claim(None, 1, 30.0)
    encoded = app.serializer.encode("sent!") if app.serializer else b""
    app.broker.ack(delivery, Outcome(State.SUCCEEDED, payload=encoded))
    page = _client(app).get(f"/jobs/{handle.id}").text
    assert "mail.send" in page and "user:42" in page
    assert "&#39;c@example.com&#39;" in page  # repr of the argument, escaped
    assert "&#39;sent!&#39;" in page
    assert "Duration" in page and " s " in page


def test_an_unknown_job_is_a_404_page(app: offload.App) -> None:
    page = _client(app).get("/jobs/nosuchjob")
    assert page.status_code == 404 and "No job" in page.text


def test_search_by_task_id_and_key_with_paging(app: offload.App) -> None:
    send = _task(app)
    handles = [send(f"{i}@example.com") for i in range(60)]
    keyed = send.options(key="order:7")("k@example.com")
    client = _client(app)
    assert keyed.id in client.get("/jobs", params={"q": "order:7"}).text
    by_id = client.get("/jobs", params={"q": handles[3].id}).text
    assert handles[3].id in by_id and handles[4].id not in by_id
    first = client.get("/jobs", params={"q": "mail."}).text
    assert keyed.id in first and handles[0].id not in first  # newest first, 50 a page
    older = re.search(r'rel="next" href="\?([^"]+)"', first)
    assert older, "a second page is offered"
    second = client.get("/jobs?" + older.group(1).replace("&amp;", "&")).text
    assert handles[0].id in second and keyed.id not in second
    assert client.get("/jobs", params={"q": "other."}).text.count("/jobs/") == 0


def test_bad_state_or_cursor_is_refused_saying_why(app: offload.App) -> None:
    client = _client(app)
    answer = client.get("/jobs", params={"state": "dead"})
    assert answer.status_code == 400 and "choose one of" in answer.text
    answer = client.get("/jobs", params={"after": "x'; drop"})
    assert answer.status_code == 400 and "not a page cursor" in answer.text


def test_cancelling_a_running_job_asks_its_worker(app: offload.App) -> None:
    send = _task(app)
    handle = send("r@example.com")
    (delivery,) = app.broker.claim(None, 1, 30.0)  # a worker runs it
    client = _client(app)
    page = client.get(f"/jobs/{handle.id}").text
    assert 'action="/jobs/' in page and "/cancel" in page, "running jobs can be cancelled"
    answer = client.post(f"/jobs/{handle.id}/cancel", data={"csrf": _csrf(page)})
    assert "Asked to stop" in answer.text
    assert app.broker.extend(delivery, 30.0) is Lease.CANCEL, "its worker hears it"


def test_retry_needs_the_csrf_token(app: offload.App) -> None:
    send = _task(app)
    handle = send("d@example.com")
    _fail(app, handle.id)
    client = _client(app)
    page = client.get(f"/jobs/{handle.id}").text
    refused = client.post(f"/jobs/{handle.id}/retry", data={})
    assert refused.status_code == 403 and "CSRF" in refused.text
    wrong = client.post(f"/jobs/{handle.id}/retry", data={"csrf": "0" * 64})
    assert wrong.status_code == 403
    assert app.inspector.job(handle.id).state is State.FAILED  # type: ignore[union-attr]
    done = client.post(f"/jobs/{handle.id}/retry", data={"csrf": _csrf(page)})
    assert done.status_code == 200 and "Job re-queued" in done.text
    assert app.inspector.job(handle.id).state is State.QUEUED  # type: ignore[union-attr]


def test_a_token_from_another_browser_is_refused(app: offload.App) -> None:
    send = _task(app)
    handle = send("e@example.com")
    mine, theirs = _client(app), _client(app)
    token = _csrf(mine.get(f"/jobs/{handle.id}").text)
    theirs.get("/")  # has a cookie of its own
    assert theirs.post(f"/jobs/{handle.id}/cancel", data={"csrf": token}).status_code == 403
    assert mine.post(f"/jobs/{handle.id}/cancel", data={"csrf": token}).status_code == 200
    assert app.inspector.job(handle.id).state is State.CANCELLED  # type: ignore[union-attr]


def test_a_post_from_another_origin_is_refused(app: offload.App) -> None:
    client = _client(app)
    token = _csrf(client.get("/dead").text)
    answer = client.post(
        "/dead/purge", data={"csrf": token}, headers={"origin": "http://evil.example"}
    )
    assert answer.status_code == 403 and "another site" in answer.text


def test_dead_letters_retry_all_and_purge(app: offload.App) -> None:
    send = _task(app)
    handles = [send(f"{i}@example.com") for i in range(3)]
    for handle in handles:
        _fail(app, handle.id)
    client = _client(app)
    page = client.get("/dead").text
    assert all(h.id in page for h in handles)
    client.post("/dead/retry-all", data={"csrf": _csrf(page)})
    assert app.inspector.counts()["default"] == {State.QUEUED: 3}
    for delivery in app.broker.claim(None, 10, 30.0):
        app.broker.ack(delivery, Outcome(State.FAILED, error_info=BOOM))
    client.post("/dead/purge", data={"csrf": _csrf(client.get("/dead").text)})
    assert app.inspector.counts() == {}


def test_read_only_shows_no_forms_and_refuses_actions(app: offload.App) -> None:
    send = _task(app)
    handle = send("f@example.com")
    _fail(app, handle.id)
    client = _client(app, read_only=True)
    page = client.get(f"/jobs/{handle.id}").text
    assert '<form method="post"' not in page and "read-only" in page
    token = _csrf(_client(app).get("/dead").text)  # a token is not enough
    answer = client.post(f"/jobs/{handle.id}/retry", data={"csrf": token})
    assert answer.status_code == 403 and "read-only" in answer.text
    assert app.inspector.job(handle.id).state is State.FAILED  # type: ignore[union-attr]


def test_a_password_is_asked_for(app: offload.App) -> None:
    client = _client(app, password="s3cret")
    answer = client.get("/")
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"].startswith("Basic")
    assert client.get("/", auth=("anyone", "wrong")).status_code == 401
    assert client.get("/", auth=("anyone", "s3cret")).status_code == 200


class _ListingInspector:
    """The app's SQLite inspector, plus the WorkerListing capability (until brokers have it)."""

    def __init__(self, inner: object) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> object:
        return getattr(self._inner, name)

    def workers(self) -> list[WorkerInfo]:
        now = time.time()
        return [WorkerInfo("box:41:ab", "box", 41, ("mail",), "threads", 8, now - 90, now, ("j1",))]


class _WithoutWorkers:
    """The app's inspector without the WorkerListing capability (a broker of someone else's)."""

    def __init__(self, inner: object) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> object:
        if name == "workers":
            raise AttributeError(name)
        return getattr(self._inner, name)


def test_workers_view_with_and_without_the_capability(app: offload.App) -> None:
    without = TestClient(create_app(app, inspector=_WithoutWorkers(app.inspector)))  # type: ignore[arg-type]
    assert "This broker does not list workers." in without.get("/workers").text
    client = TestClient(create_app(app, inspector=_ListingInspector(app.inspector)))  # type: ignore[arg-type]
    page = client.get("/workers").text
    assert "box:41:ab" in page and "mail" in page and "threads" in page


def test_the_workers_view_lists_a_real_worker_from_the_registry(app: offload.App) -> None:
    worker = app.worker(queues=["mail"], concurrency=3)
    worker.start()
    try:
        page = _client(app).get("/workers").text
        assert f":{os.getpid()}:" in page and "mail" in page
    finally:
        worker.stop()
    assert "No worker is alive." in _client(app).get("/workers").text


@pytest.fixture(params=["sqlite", "redis", "postgres"])
def tasks_module(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Any]:
    """``tests/dashboard_tasks.py`` on a broker of its own, as worker processes import it."""
    from servers import scratch_url

    with scratch_url(request.param, tmp_path) as url:
        monkeypatch.setenv("OFFLOAD_TEST_URL", url)
        sys.modules.pop("dashboard_tasks", None)
        import dashboard_tasks

        yield dashboard_tasks
        sys.modules.pop("dashboard_tasks", None)
        dashboard_tasks.app.shutdown(wait=False)


def _worker_process(cwd: Path, *options: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(TESTS)}
    command = [sys.executable, "-m", "offload", "worker", "dashboard_tasks:app", *options]
    return subprocess.Popen(
        command,
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def _stopped(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


def test_the_workers_view_lists_a_real_worker_process(tasks_module: Any, tmp_path: Path) -> None:
    """``offload worker`` registers itself: the view shows its pid, queues and running job."""
    marker = tmp_path / "rows-imported"
    handle = tasks_module.crunch.options(queue="mail")(10, str(marker))
    worker = _worker_process(tmp_path, "-q", "mail,default", "-c", "2", "--no-scheduler")
    client = _client(tasks_module.app)
    try:
        pid_cell = f'<td class="num" data-pid>{worker.pid}</td>'

        def running_listed() -> bool:
            page = client.get("/workers").text
            return pid_cell in page and f'href="/jobs/{handle.id}"' in page

        assert wait_until(running_listed, timeout=90), client.get("/workers").text
        page = client.get("/workers").text
        assert "<td>mail, default</td>" in page and "data-running>1<br>" in page
        shows_progress = lambda: "7 / 10 (70%)" in client.get(f"/jobs/{handle.id}").text  # noqa: E731
        assert wait_until(shows_progress, timeout=60)  # written by the worker, read here
        marker.touch()
        job = tasks_module.app.inspector.job
        assert wait_until(lambda: job(handle.id).state is State.SUCCEEDED, timeout=90)
        assert wait_until(lambda: "data-running>0</td>" in client.get("/workers").text, 30)
    finally:
        _stopped(worker)
    assert worker.returncode == 0
    assert "No worker is alive." in client.get("/workers").text  # it left the registry


def test_the_command_refuses_a_public_bind_without_a_password(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    command = [sys.executable, "-m", "offload", "dashboard", "--host", "0.0.0.0"]
    env = {"OFFLOAD_URL": url, "PATH": "/usr/bin:/bin"}
    done = subprocess.run(command, check=False, capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 2
    assert "refusing to serve the dashboard on 0.0.0.0" in done.stderr
    assert "OFFLOAD_DASHBOARD_PASSWORD" in done.stderr


def test_metrics_of_the_broker(app: offload.App) -> None:
    pytest.importorskip("prometheus_client", reason="the metrics extra is not installed")
    send = _task(app)
    send("g@example.com")
    send.options(queue="mail")("h@example.com")
    text = _client(app).get("/metrics").text
    assert 'offload_queue_jobs{queue="default",state="queued"} 1.0' in text
    assert 'offload_queue_jobs{queue="mail",state="failed"} 0.0' in text
    assert 'offload_queue_lag_seconds{queue="default"}' in text


def test_the_charts_count_finished_jobs_of_the_last_hour(app: offload.App) -> None:
    send = _task(app)
    for i in range(3):
        send(f"{i}@example.com")
    deliveries = app.broker.claim(None, 3, 30.0)
    app.broker.ack(deliveries[0], Outcome(State.FAILED, error_info=BOOM))
    for delivery in deliveries[1:]:
        app.broker.ack(delivery, Outcome(State.SUCCEEDED, payload=b"1"))
    client = _client(app)
    throughput, failure = client.get("/api/charts").json()
    assert throughput["total"] == "2 succeeded, 1 failed"
    assert failure["total"] == "33.3% overall"
    assert "2 succeeded, 1 failed" in client.get("/").text


@pytest.fixture(params=["redis", "postgresql"])
def server_app(request: pytest.FixtureRequest) -> Iterator[offload.App]:
    """An app on the Redis or PostgreSQL test server, in a namespace of its own."""
    from servers import drop_postgres_schema, require_postgres, require_redis

    namespace = f"t_{uuid.uuid4().hex}"
    server = require_redis() if request.param == "redis" else require_postgres()
    url = f"{server}?namespace={namespace}"
    application = offload.App(url, name="dash")
    yield application
    application.shutdown(wait=False)
    if request.param == "redis":
        from offload._brokers._redis import RedisBroker

        RedisBroker.from_url(url).drop()
    else:
        drop_postgres_schema(f"offload_{namespace}")


def _check_progress(app: offload.App) -> None:
    """A running job's progress on its page, in its JSON and in the jobs list, escaped."""
    send = _task(app)
    running, quiet = send("p@example.com"), send("q@example.com")
    deliveries = app.broker.claim(None, 2, 30.0)
    assert [d.message.id for d in deliveries] == [running.id, quiet.id]
    inspector = app.inspector
    assert isinstance(inspector, ProgressStore)
    note = "rows <b>7</b> & more"
    assert inspector.record_progress(deliveries[0], Progress(7, 10, note, time.time()))
    client = _client(app)
    page = client.get(f"/jobs/{running.id}").text
    assert "7 / 10 (70%)" in page and 'max="100" value="70.0"' in page
    assert "rows &lt;b&gt;7&lt;/b&gt; &amp; more" in page and "<b>7</b>" not in page
    assert "style=" not in page  # the CSP forbids inline style: the bar is a <progress>
    live = client.get(f"/api/jobs/{running.id}").json()
    assert live["state"] == "running"
    assert live["progress"]["percent"] == 70.0 and live["progress"]["note"] == note
    assert live["progress"]["text"] == "7 / 10 (70%)"
    other = client.get(f"/jobs/{quiet.id}").text
    assert "none reported" in other and "<progress data-progress-bar hidden>" in other
    assert client.get(f"/api/jobs/{quiet.id}").json()["progress"] is None
    listing = client.get("/jobs", params={"state": "running"}).text
    assert listing.count("data-job-progress") == 1 and "7 / 10 (70%)" in listing


def test_a_running_job_shows_its_progress(app: offload.App) -> None:
    _check_progress(app)


def test_progress_without_a_total_is_a_count_and_an_indeterminate_bar(app: offload.App) -> None:
    handle = _task(app)("r@example.com")
    (delivery,) = app.broker.claim(None, 1, 30.0)
    app.inspector.record_progress(delivery, Progress(42, None, None, time.time()))  # type: ignore[attr-defined]
    page = _client(app).get(f"/jobs/{handle.id}").text
    assert "42 done" in page and "<progress data-progress-bar></progress>" in page


def beat() -> None:
    """A schedule's task (the schedules view)."""


def report() -> None:
    """Another schedule's task."""


class _CountingProgress:
    """The app's inspector, counting its ``progress`` reads."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.reads: list[str] = []

    def __getattr__(self, name: str) -> object:
        return getattr(self._inner, name)

    def record_progress(self, delivery: Any, progress: Progress) -> bool:
        return bool(self._inner.record_progress(delivery, progress))

    def progress(self, job_id: str) -> Progress | None:
        self.reads.append(job_id)
        return self._inner.progress(job_id)  # type: ignore[no-any-return]


def test_the_jobs_list_reads_the_progress_of_running_jobs_only(app: offload.App) -> None:
    send = _task(app)
    handles = [send(f"{i}@example.com") for i in range(5)]
    running = app.broker.claim(None, 3, 30.0)
    counting = _CountingProgress(app.inspector)
    client = TestClient(create_app(app, inspector=counting))  # type: ignore[arg-type]
    page = client.get("/jobs").text
    assert sorted(counting.reads) == sorted(d.message.id for d in running)
    assert all(h.id in page for h in handles) and "data-job-progress" not in page  # none said
    counting.reads.clear()
    client.get("/dead")
    assert counting.reads == []


def _check_schedules(app: offload.App) -> None:
    """Both kinds of schedule, before their first tick, after one, and after skipped ones."""
    beat_task = app.periodic(every=60)(beat)
    app.periodic(cron="30 4 * * 1", tz="Europe/Paris", missed="once")(report)
    beat_name, report_name = list(app.schedules)
    client = _client(app)
    page = client.get("/schedules").text
    assert "every 60s" in page and "cron 30 4 * * 1" in page and "Europe/Paris" in page
    assert "+01:00" in page or "+02:00" in page  # Paris times in Paris
    assert page.count('<td data-last-run><span class="muted">-</span>') == 2
    broker = app.broker
    assert isinstance(broker, Scheduling)
    fire = time.time() - 30
    tick = beat_task.options(key=app.schedules[beat_name].key(fire))()
    assert broker.schedules.record_fired(beat_name, None, Fired(fire, tick.id))
    assert broker.schedules.record_fired(report_name, None, Fired(fire - 7 * 86400, ""))
    page = client.get("/schedules").text
    assert f'<a href="/jobs/{tick.id}"><span class="state queued">queued</span></a>' in page
    assert '<span class="muted">skipped</span>' in page
    assert client.get(f"/jobs/{tick.id}").status_code == 200


def test_the_schedules_view(app: offload.App) -> None:
    _check_schedules(app)


def test_an_app_without_schedules_says_so(app: offload.App) -> None:
    assert "declares no schedules" in _client(app).get("/schedules").text


def test_progress_and_schedules_on_the_server_brokers(server_app: offload.App) -> None:
    _check_progress(server_app)
    _check_schedules(server_app)


def test_every_view_and_a_retry_on_the_server_brokers(server_app: offload.App) -> None:
    send = _task(server_app)
    handles = [send(f"{i}@example.com") for i in range(55)]
    (delivery,) = server_app.broker.claim(None, 1, 30.0)
    server_app.broker.ack(delivery, Outcome(State.FAILED, error_info=BOOM))
    failed = delivery.message.id
    client = _client(server_app)
    assert client.get("/api/counts").json()["default"] == {
        "queued": 54,
        "running": 0,
        "retrying": 0,
        "failed": 1,
        "succeeded": 0,
        "cancelled": 0,
    }
    first = client.get("/jobs").text
    older = re.search(r'rel="next" href="\?([^"]+)"', first)
    assert older and handles[-1].id in first
    assert handles[0].id in client.get("/jobs?" + older.group(1).replace("&amp;", "&")).text
    assert handles[7].id in client.get("/jobs", params={"q": handles[7].id}).text
    dead = client.get("/dead").text
    assert failed in dead
    page = client.get(f"/jobs/{failed}").text
    assert "boom &lt;b&gt;bold&lt;/b&gt;" in page
    client.post(f"/jobs/{failed}/retry", data={"csrf": _csrf(page)})
    assert server_app.inspector.job(failed).state is State.QUEUED  # type: ignore[union-attr]
    assert client.get("/workers").status_code == 200
    assert client.get("/metrics").status_code == 200


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        ("127.0.0.1", True),
        ("127.0.0.2", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.10", False),
        ("dashboard.example", False),  # a name may resolve anywhere
    ],
)
def test_only_loopback_is_served_without_a_password(host: str, allowed: bool) -> None:
    from offload.dashboard import check_bind

    check_bind(host, "pw")  # a password allows any address
    if allowed:
        check_bind(host, None)
    else:
        with pytest.raises(offload.ConfigurationError, match="Set a password"):
            check_bind(host, None)


def test_the_password_guards_the_json_and_metrics_too(app: offload.App) -> None:
    client = _client(app, password="s3cret")
    for path in ("/api/counts", "/api/charts", "/api/jobs/x", "/metrics", "/static/dashboard.js"):
        assert client.get(path).status_code == 401, path
    assert client.get("/api/counts", auth=("u", "s3cret")).status_code == 200
