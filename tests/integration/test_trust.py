"""Trust, in the core: what a worker may run, what data may name, errors that come back whole.

The end-to-end proof with real worker processes on every durable broker is
``tests/e2e/durable/test_security.py``; the poison cases per broker are in
``tests/integration/poison/``. Here: the rules themselves, on SQLite files and the
memory broker, and property tests of the decoders.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
import urllib.error
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import offload
from helpers import wait_until
from offload import State
from offload._brokers import MemoryBroker
from offload._brokers._url import redacted
from offload._errors import (
    ConfigurationError,
    NotSerializable,
    OffloadError,
    PayloadRejected,
    TaskFailed,
    TaskNotAllowed,
    TaskNotImportable,
)
from offload._message import ErrorInfo, Message, new_id
from offload._results import rebuild_error
from offload._runner import Runner, error_info
from offload._serializers import JsonSerializer, PickleSerializer, decode_call
from offload._worker import Worker
from servers import drop_postgres_schema, require_postgres, require_redis

WAIT = 20.0


# --- what a worker runs --------------------------------------------------------------


def helper_function(x: int) -> int:
    """A plain function of this module: runs only when the app includes it."""
    return x + 1


class Custom(Exception):
    def __init__(self, code: int, detail: str) -> None:
        super().__init__(code, detail)
        self.code = code


class Formatted(Exception):
    """Its constructor's parameters are not its args."""

    def __init__(self, a: int, b: int) -> None:
        super().__init__(f"{a} and {b}")


def raise_it(kind: str) -> None:
    errors: dict[str, BaseException] = {
        "key": KeyError("missing"),
        "value": ValueError("bad", 3),
        "url": urllib.error.URLError(ConnectionRefusedError(111, "refused")),
        "custom": Custom(7, "seven"),
        "formatted": Formatted(1, 2),
        "exit": SystemExit(3),
        "interrupt": KeyboardInterrupt(),
    }
    raise errors[kind]


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'jobs.db'}"


def return_unstorable() -> str:
    """What os.listdir() can return: text with a lone surrogate."""
    return b"caf\xe9".decode("utf-8", "surrogateescape")


def raise_unstorable() -> None:
    raise ValueError("a NUL \x00 and a lone surrogate " + return_unstorable())


@pytest.fixture(params=["sqlite", "redis", "postgresql"])
def broker_url(request: pytest.FixtureRequest, db_url: str) -> Iterator[str]:
    """A fresh broker of each kind; Redis and PostgreSQL in a namespace dropped after."""
    namespace = f"t_{uuid.uuid4().hex}"
    if request.param == "sqlite":
        yield db_url
    elif request.param == "redis":
        url = f"{require_redis()}?namespace={namespace}"
        yield url
        from offload._brokers._redis import RedisBroker

        RedisBroker.from_url(url).drop()
    else:
        yield f"{require_postgres()}?namespace={namespace}"
        drop_postgres_schema(f"offload_{namespace}")


def running_pair(
    url: str, producer_include: list[str], worker_include: list[str]
) -> tuple[offload.App, offload.App, Worker]:
    """A producer app and a worker app on ``url``, the worker started."""
    producer = offload.App(url, name="producer", include=producer_include)
    consumer = offload.App(url, name="consumer", include=worker_include)
    for app in (producer, consumer):
        for fn in (raise_it, return_unstorable, raise_unstorable, make_model, helper_function):
            app.task(name=fn.__name__)(fn)
    worker = consumer.worker(concurrency=2)
    worker.start()
    return producer, consumer, worker


@pytest.fixture
def pair(broker_url: str) -> Iterator[tuple[offload.App, offload.App]]:
    """A producer app and a worker app on one broker of each kind, with a worker running."""
    producer, consumer, worker = running_pair(broker_url, [__name__], [__name__])
    yield producer, consumer
    worker.stop()
    producer.shutdown(wait=False)
    consumer.shutdown(wait=False)


def make_model() -> Any:
    import skew_models  # type: ignore[import-not-found]

    return skew_models.Model(1)


def test_a_result_the_producer_cannot_decode_fails_only_its_handle(
    broker_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "skew_models.py").write_text(
        "from dataclasses import dataclass\n\n@dataclass\nclass Model:\n    x: int\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    # Version skew: the worker knows skew_models, the producer does not include it.
    producer, consumer, worker = running_pair(broker_url, [], ["skew_models"])
    try:
        model = producer.task(name="make_model")(make_model)
        plus_one = producer.task(name="helper_function")(helper_function)
        bad = model()
        good = [plus_one(i) for i in range(10)]
        with pytest.raises(PayloadRejected, match="skew_models"):
            bad.result(timeout=WAIT)
        assert [h.result(timeout=WAIT) for h in good] == list(range(1, 11))
    finally:
        worker.stop()
        producer.shutdown(wait=False)
        consumer.shutdown(wait=False)
        sys.modules.pop("skew_models", None)


def test_a_result_that_cannot_be_stored_fails_its_job_with_the_reason(
    pair: tuple[offload.App, offload.App],
) -> None:
    producer, _ = pair
    task = producer.task(name="return_unstorable")(return_unstorable)
    with pytest.raises(NotSerializable, match="lone surrogate"):
        task().result(timeout=WAIT)


def test_an_error_text_no_store_takes_is_stored_escaped(
    pair: tuple[offload.App, offload.App],
) -> None:
    producer, _ = pair
    task = producer.task(name="raise_unstorable")(raise_unstorable)
    handle = task()
    with pytest.raises(ValueError, match="NUL"):
        handle.result(timeout=WAIT)
    job = producer.inspector.job(handle.id)
    assert job is not None and job.state is State.FAILED
    assert job.error is not None and "\\x00" in job.error.message


def test_enqueue_of_a_function_outside_the_included_modules_is_refused_at_the_call(
    db_url: str,
) -> None:
    app = offload.App(db_url, name="strict")
    try:
        with pytest.raises(TaskNotAllowed, match=r"include=\['test_trust'\]"):
            app.enqueue(helper_function, 1)
        with pytest.raises(TaskNotAllowed, match=r"include=\['sys'\]"):
            app.enqueue(sys.exit, 3)
    finally:
        app.shutdown(wait=False)


def test_included_plain_functions_run(pair: tuple[offload.App, offload.App]) -> None:
    producer, _ = pair
    assert producer.enqueue(helper_function, 41).result(timeout=WAIT) == 42


def test_a_worker_without_the_include_refuses_and_imports_nothing(db_url: str) -> None:
    producer = offload.App(db_url, name="producer", include=[__name__])
    consumer = offload.App(db_url, name="consumer")  # no include
    worker = consumer.worker(concurrency=1)
    worker.start()
    try:
        with pytest.raises(TaskNotAllowed, match="include"):
            producer.enqueue(helper_function, 1).result(timeout=WAIT)
    finally:
        worker.stop()
        producer.shutdown(wait=False)
        consumer.shutdown(wait=False)


def test_forged_names_in_the_memory_broker_run_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    app = offload.App(name="in-process")
    pwned = tmp_path / "pwned"
    try:
        double = app.task(name="double")(lambda x: 2 * x)
        assert double(2).result(timeout=WAIT) == 4  # the worker runs
        forged = [
            Message(new_id(), "posix:system", (f"touch {pwned}",), {}),
            Message(new_id(), "builtins:eval", (f"open({str(pwned)!r}, 'w')",), {}),
            Message(new_id(), "os:abort", (), {}),
        ]
        app.broker.enqueue(forged)
        # In-process, a finished job without a handle leaves only its log line.
        assert wait_until(
            lambda: sum("dead-lettered" in r.getMessage() for r in caplog.records) == 3,
            timeout=WAIT,
        )
        assert all("include" in r.getMessage() for r in caplog.records if r.levelname == "ERROR")
        assert not pwned.exists()
        assert double(5).result(timeout=WAIT) == 10
    finally:
        app.shutdown(wait=False)


def test_an_included_module_is_imported_for_its_decorated_tasks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Celery's layout: one module makes the app, others declare tasks on it.
    url = f"sqlite:///{tmp_path / 'x.db'}"
    (tmp_path / "core_app.py").write_text(
        f"import offload\napp = offload.App({url!r}, include=['late_tasks'])\n"
    )
    (tmp_path / "late_tasks.py").write_text(
        "import os\n"
        "from core_app import app\n\n"
        "@app.task\n"
        "def hello(name):\n"
        "    return f'hello {name}'\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    import core_app  # type: ignore[import-not-found]

    worker_app = core_app.app
    try:
        assert "late_tasks" not in sys.modules
        spec = worker_app.resolve_task("late_tasks.hello")
        assert spec is not None and spec.fn("x") == "hello x"
        assert worker_app.resolve_task("late_tasks.os") is None  # not a task
        with pytest.raises(TaskNotAllowed, match="not a function defined in"):
            worker_app.resolve_task("late_tasks:os.system")
        assert worker_app.resolve_task("other_module.task") is None
        assert "other_module" not in sys.modules
    finally:
        worker_app.shutdown(wait=False)
        sys.modules.pop("late_tasks", None)
        sys.modules.pop("core_app", None)


def test_include_takes_module_names() -> None:
    with pytest.raises(ConfigurationError, match="module names"):
        offload.App(include=["not a module"])


# --- data names classes only of declared modules ------------------------------------


def test_a_payload_cannot_name_a_class_of_an_undeclared_module() -> None:
    strict = JsonSerializer(modules=lambda module: module == "datetime")
    tag = {"__offload__": "dataclass", "cls": "subprocess:CompletedProcess", "v": {}}
    with pytest.raises(PayloadRejected, match="does not include"):
        strict.decode(json.dumps(tag).encode())
    enum_tag = {"__offload__": "enum", "cls": "signal:Signals", "v": 9}
    with pytest.raises(PayloadRejected, match="does not include"):
        strict.decode(json.dumps(enum_tag).encode())


def test_a_serializer_without_a_policy_never_imports() -> None:
    if "xml.dom.minidom" in sys.modules:
        pytest.skip("xml.dom.minidom is imported already in this process")
    tag = {"__offload__": "dataclass", "cls": "xml.dom.minidom:Node", "v": {}}
    with pytest.raises(PayloadRejected):
        JsonSerializer().decode(json.dumps(tag).encode())
    assert "xml.dom.minidom" not in sys.modules


# --- errors come back whole, and only as Exceptions ---------------------------------


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("key", KeyError("missing")),
        ("value", ValueError("bad", 3)),
        ("custom", Custom(7, "seven")),
    ],
)
def test_errors_come_back_with_their_type_and_args(
    pair: tuple[offload.App, offload.App], kind: str, expected: Exception
) -> None:
    producer, _ = pair
    task = producer.task(name="raise_it")(raise_it)
    with pytest.raises(type(expected)) as caught:
        task(kind).result(timeout=WAIT)
    assert caught.value.args == expected.args
    assert str(caught.value) == str(expected)
    assert "raise_it" in str(caught.value.__cause__)  # the worker's traceback


def test_an_exception_with_unencodable_args_reads_the_same(
    pair: tuple[offload.App, offload.App],
) -> None:
    producer, _ = pair
    task = producer.task(name="raise_it")(raise_it)
    with pytest.raises(urllib.error.URLError) as caught:
        task("url").result(timeout=WAIT)
    original = urllib.error.URLError(ConnectionRefusedError(111, "refused"))
    assert str(caught.value) == str(original)  # not wrapped twice


def test_a_constructor_that_formats_its_message_still_gives_its_type(
    pair: tuple[offload.App, offload.App],
) -> None:
    producer, _ = pair
    task = producer.task(name="raise_it")(raise_it)
    with pytest.raises(Formatted, match="1 and 2"):
        task("formatted").result(timeout=WAIT)


@pytest.mark.parametrize("kind", ["exit", "interrupt"])
def test_base_exceptions_never_reach_the_producer_as_themselves(
    pair: tuple[offload.App, offload.App], kind: str
) -> None:
    producer, _ = pair
    task = producer.task(name="raise_it")(raise_it)
    handle = task(kind)
    assert wait_until(handle.done, timeout=WAIT)
    error = handle.exception()
    assert isinstance(error, TaskFailed)
    assert error.type_name in ("builtins.SystemExit", "builtins.KeyboardInterrupt")


def test_an_error_record_imports_nothing() -> None:
    info = ErrorInfo("xml.dom.minidom.Node", "x", "", None)
    rebuilt = rebuild_error(info)
    assert isinstance(rebuilt, TaskFailed)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(
        ["builtins.KeyError", "builtins.SystemExit", "test_trust.Custom", "os.error", "x.y", ""]
    ),
    st.text(),
    st.one_of(st.none(), st.text(), st.just('["a", 1]'), st.just("[1, 2, 3, 4]")),
)
def test_rebuilding_any_error_record_gives_an_exception(
    kind: str, message: str, args: str | None
) -> None:
    rebuilt = rebuild_error(ErrorInfo(kind, message, "tb", args), JsonSerializer().decode)
    assert isinstance(rebuilt, Exception)


def test_error_records_are_storable_and_carry_args() -> None:
    info = error_info(ValueError("nul\x00here", b"\xff".decode("utf-8", "surrogateescape")))
    for text in (info.type, info.message, info.traceback, info.args or ""):
        assert "\x00" not in text
        text.encode("utf-8")  # no lone surrogate left
    assert info.args is not None


# --- decoders: nothing but offload's own errors escape ------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
tags = st.sampled_from(
    ["tuple", "set", "frozenset", "dict", "float", "int", "datetime", "date", "time",
     "timedelta", "uuid", "decimal", "bytes", "dataclass", "enum", "nope"]
)  # fmt: skip


@st.composite
def tagged(draw: Any) -> Any:
    value = {"__offload__": draw(tags), "v": draw(json_values)}
    if draw(st.booleans()):
        value["cls"] = draw(st.sampled_from(["test_trust:Custom", "os:system", ":", "a:b.c"]))
    return value


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.binary(max_size=64), json_values.map(lambda v: json.dumps(v).encode())))
def test_decoding_any_bytes_raises_only_payload_rejected(data: bytes) -> None:
    with contextlib.suppress(PayloadRejected):
        decode_call(JsonSerializer(), data)


@settings(max_examples=500, deadline=None)
@given(st.lists(st.one_of(tagged(), json_values), max_size=3))
def test_decoding_any_tags_raises_only_payload_rejected(args: list[Any]) -> None:
    data = json.dumps([args, {}]).encode()
    with contextlib.suppress(PayloadRejected):
        decode_call(JsonSerializer(modules=lambda module: module == "test_trust"), data)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=20), st.binary(max_size=40))
def test_a_pickle_seal_covers_the_task_name(task: str, payload: bytes) -> None:
    serializer = PickleSerializer(b"k" * 32)
    message = Message("id1", "tasks.safe", (), {}, payload=payload)
    serializer.seal(message)
    serializer.check_seal(message)
    message.task = task if task != "tasks.safe" else "tasks.other"
    with pytest.raises(PayloadRejected, match="signature"):
        serializer.check_seal(message)


# --- bad options are refused at the call --------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        {"delay": float("nan")},
        {"delay": float("inf")},
        {"eta": float("nan")},
        {"timeout": float("nan")},
        {"priority": 10**12},
        {"retries": 10**9},
        {"queue": "bad\x00queue"},
        {"queue": "q" * 500},
        {"key": "k\x00"},
        {"key": "k" * 5000},
    ],
)
def test_absurd_options_are_refused_at_the_call(db_url: str, options: dict[str, Any]) -> None:
    app = offload.App(db_url, name="options")
    try:
        task = app.task(name="t")(helper_function)
        with pytest.raises(ConfigurationError):
            task.options(**options)(1)
        assert app.broker.inspector.counts() == {}  # type: ignore[attr-defined]
    finally:
        app.shutdown(wait=False)


def test_bad_names_are_refused_at_declaration() -> None:
    app = offload.App(name="names")
    with pytest.raises(ConfigurationError, match="NUL"):
        app.task(name="a\x00b")(helper_function)
    with pytest.raises(ConfigurationError, match="queue"):
        app.task(queue="")(helper_function)


# --- passwords ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "redis://:hunter2@localhost:6379/0",
        "redis://user:hunter2@localhost:6379/0?namespace=a",
        "postgresql://bob:hunter2@localhost/db?sslmode=disable",
        "postgresql://bob@localhost/db?password=hunter2",
        "host=localhost password=hunter2 dbname=x",
        "redis:/:hunter2@localhost",
        "rdis://:hunter2@localhost",
    ],
)
def test_a_password_never_appears_in_an_error_or_repr(url: str) -> None:
    assert "hunter2" not in redacted(url)
    try:
        app = offload.App(url, namespace="b")
    except Exception as error:  # any error: its text is what we check
        assert "hunter2" not in str(error)
    else:
        try:
            assert "hunter2" not in repr(app)
        finally:
            app.shutdown(wait=False)


# --- the script you run ---------------------------------------------------------------


def test_a_durable_task_in_the_script_you_run_reaches_the_worker(tmp_path: Path) -> None:
    db = tmp_path / "jobs.db"
    (tmp_path / "script.py").write_text(
        "import offload\n\n"
        "@offload.task\n"
        "def hello(name):\n"
        "    return f'hello {name}'\n\n"
        "if __name__ == '__main__':\n"
        "    print(hello('world').result(timeout=20))\n"
    )
    env = {**os.environ, "OFFLOAD_URL": f"sqlite:///{db}", "PYTHONPATH": str(tmp_path)}
    worker = subprocess.Popen(
        [sys.executable, "-m", "offload", "worker", "script"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        done = subprocess.run(
            [sys.executable, "script.py"],
            check=False,
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "hello world"
    finally:
        worker.kill()
        worker.wait()


def test_a_durable_call_of_a_task_no_worker_can_import_is_refused(db_url: str) -> None:
    app = offload.App(db_url, name="interactive")
    try:
        namespace: dict[str, Any] = {"__name__": "__main__"}
        exec("def typed_in(): return 1", namespace)  # as in a REPL: no file behind it
        task = app.task(namespace["typed_in"])
        with pytest.raises(TaskNotImportable, match="cannot run in another process"):
            task()
    finally:
        app.shutdown(wait=False)


# --- leases never exceed slots --------------------------------------------------------


class LeaseCountingBroker(MemoryBroker):
    """A broker as far away as a server (each claim takes a round trip), noting
    how many leases it holds right after each claim: the peak a worker reaches."""

    peak = 0

    def claim(self, queues: Any, limit: int, lease: float) -> list[Any]:
        time.sleep(0.002)  # a network round trip: claims from two threads overlap
        deliveries = super().claim(queues, limit, lease)
        self.peak = max(self.peak, len(self._inflight))  # acks only lower it meanwhile
        return deliveries


def test_a_worker_never_holds_more_leases_than_slots() -> None:
    broker = LeaseCountingBroker()
    app = offload.App(name="slots")
    spec = app.task(name="nap")(lambda: time.sleep(0.001)).spec
    runner = Runner(broker, {spec.name: spec}, app.clock, {})
    worker = Worker(broker, runner, sizes={"thread": 4}, lease=30.0, idle_timeout=0.001)
    broker.enqueue([Message(new_id(), "nap", (), {}) for _ in range(1000)])
    worker.start()
    try:
        assert wait_until(
            lambda: broker.inspector.counts().get("default", {}).get(State.SUCCEEDED, 0) == 1000,
            timeout=60,
        )
    finally:
        worker.stop()
        app.shutdown(wait=False)
    assert 0 < broker.peak <= 4


def test_offload_errors_share_one_root() -> None:
    assert issubclass(TaskNotAllowed, OffloadError)


def test_pickle_signs_the_whole_message(broker_url: str) -> None:
    key = b"k" * 32
    producer = offload.App(broker_url, serializer="pickle", pickle_key=key, name="p")
    consumer = offload.App(broker_url, serializer="pickle", pickle_key=key, name="c")
    for app in (producer, consumer):
        app.task(name="raise_it")(raise_it)
        app.task(name="helper_function")(helper_function)
    worker = consumer.worker(concurrency=2)
    worker.start()
    try:
        assert producer.task(name="helper_function")(helper_function)(1).result(timeout=WAIT) == 2
        # A payload signed with the key, pointed at another task: before, only
        # the payload was signed, and this ran.
        serializer = PickleSerializer(key)
        forged = Message(new_id(), "raise_it", (), {}, created=time.time())
        forged.payload = serializer.encode([["exit"], {}])
        producer.broker.enqueue([forged])
        assert wait_until(
            lambda: getattr(producer.inspector.job(forged.id), "state", None) is State.FAILED,
            timeout=WAIT,
        )
        error = producer.inspector.job(forged.id).error  # type: ignore[union-attr]
        assert error is not None and "signature" in error.message
        assert error.type == "offload._errors.PayloadRejected"
    finally:
        worker.stop()
        producer.shutdown(wait=False)
        consumer.shutdown(wait=False)
