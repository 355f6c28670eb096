"""What the contract suite cannot see of the Redis broker: namespaces, processes, restarts, outages.

Runs against ``OFFLOAD_TEST_REDIS_URL`` (``redis://127.0.0.1:6379/0`` by
default; skipped when it is down, failed under ``CI``), each test in a key
namespace of its own. The restart and outage tests start a private
``redis-server`` with an append-only file on a free port, and always stop it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

redis = pytest.importorskip("redis")

import offload  # noqa: E402
from offload import BrokerUnavailable, ConfigurationError  # noqa: E402
from offload._brokers._redis import RedisBroker  # noqa: E402
from offload._message import Message, Outcome, State, new_id  # noqa: E402
from offload.testing import FakeClock  # noqa: E402
from servers import REDIS_URL, require_redis  # noqa: E402

URL = REDIS_URL
SRC = Path(offload.__file__).resolve().parents[1]


def message(**fields: Any) -> Message:
    fields.setdefault("payload", b'{"args": []}')
    fields.setdefault("created", time.time())
    return Message(new_id(), "tasks.work", (), {}, **fields)


@pytest.fixture
def make_broker() -> Iterator[Callable[..., RedisBroker]]:
    """``make_broker(namespace=..., url=..., clock=...)``; namespaces dropped after the test."""
    made: list[RedisBroker] = []

    def make(url: str | None = None, **options: Any) -> RedisBroker:
        options.setdefault("namespace", f"test-{uuid.uuid4().hex}")
        broker = RedisBroker.from_url(url or require_redis(), **options)
        made.append(broker)
        return broker

    yield make
    for broker in made:
        with contextlib.suppress(BrokerUnavailable):  # a private server, stopped already
            broker.drop()
        broker.close()


# -- a private redis-server ------------------------------------------------------


class PrivateRedis:
    """A redis-server of this test on a free port, with an append-only file in ``directory``."""

    def __init__(self, directory: Path, *extra: str) -> None:
        self.directory = directory
        self.extra = extra
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        command = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
        command += ["--appendonly", "yes", "--appendfsync", "always", "--save", ""]
        command += ["--dir", str(self.directory), "--logfile", "redis.log", *self.extra]
        self.process = subprocess.Popen(command, start_new_session=True)
        deadline = time.monotonic() + 20
        client = redis.Redis(
            port=self.port,
            password=self._password(),
            socket_connect_timeout=0.5,
            socket_timeout=0.5,
        )
        while True:
            try:
                client.ping()  # also fails while the AOF loads
                return
            except redis.RedisError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError(f"redis-server on port {self.port} did not start") from None
                time.sleep(0.05)
            finally:
                client.close()

    def _password(self) -> str | None:
        extra = list(self.extra)
        return extra[extra.index("--requirepass") + 1] if "--requirepass" in extra else None

    def kill(self) -> None:
        """SIGKILL: no chance to save anything beyond what the AOF already holds."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def signal(self, number: int) -> None:
        assert self.process is not None
        os.killpg(self.process.pid, number)


@pytest.fixture
def start_redis(tmp_path: Path) -> Iterator[Callable[..., PrivateRedis]]:
    """``start_redis(*extra_args)``: private servers, all killed after the test."""
    if shutil.which("redis-server") is None:
        reason = "redis-server is not installed: the restart tests start their own"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    started: list[PrivateRedis] = []

    def start(*extra: str) -> PrivateRedis:
        directory = tmp_path / f"redis-{len(started)}"
        directory.mkdir()
        server = PrivateRedis(directory, *extra)
        started.append(server)
        server.start()
        return server

    try:
        yield start
    finally:
        for server in started:
            server.kill()  # SIGKILL ends a SIGSTOPped server too


# -- one server, many apps -------------------------------------------------------


def test_namespaces_isolate_apps(make_broker: Callable[..., RedisBroker]) -> None:
    first, second = make_broker(), make_broker()
    a, keyed = message(), message(key="report")
    first.enqueue([a, keyed])
    other = message(key="report")
    assert second.enqueue([other]) == [other.id], "keys do not cross namespaces"
    assert second.inspector.job(a.id) is None
    assert [d.message.id for d in second.claim(None, 10, 30)] == [other.id]
    assert first.inspector.counts() == {"default": {State.QUEUED: 2}}
    assert second.inspector.counts() == {"default": {State.RUNNING: 1}}
    first.drop()
    assert first.inspector.counts() == {}
    assert second.inspector.counts() == {"default": {State.RUNNING: 1}}, (
        "dropping one leaves the other"
    )


def test_an_app_passes_its_namespace_to_the_broker() -> None:
    url = require_redis()
    app = offload.App(url, namespace="app1")
    try:
        assert isinstance(app.broker, RedisBroker)
        assert app.broker.prefix == "offload:app1:"
    finally:
        app.shutdown(wait=False)
    with pytest.raises(ConfigurationError, match="namespace"):
        RedisBroker.from_url(url, namespace="a:b")
    in_url = RedisBroker.from_url("redis://127.0.0.1:6379/0?socket_timeout=3&namespace=app2")
    assert in_url.prefix == "offload:app2:"
    assert in_url._client.connection_pool.connection_kwargs["socket_timeout"] == 3
    with pytest.raises(ConfigurationError, match="two namespaces"):
        RedisBroker.from_url("redis://127.0.0.1:6379/0?namespace=a", namespace="b")


def test_the_url_gives_password_db_and_tls(
    start_redis: Callable[..., PrivateRedis], make_broker: Callable[..., RedisBroker]
) -> None:
    server = start_redis("--requirepass", "s3cret")
    broker = make_broker(f"redis://:s3cret@127.0.0.1:{server.port}/3")
    m = message()
    broker.enqueue([m])
    in_db3 = redis.Redis(port=server.port, password="s3cret", db=3)
    assert in_db3.exists(f"{broker.prefix}job:{m.id}") == 1
    wrong = RedisBroker.from_url(f"redis://:nope@127.0.0.1:{server.port}/3")
    with pytest.raises(ConfigurationError, match="password"):
        wrong.enqueue([message()])
    assert "nope" not in repr(wrong) and "s3cret" not in repr(broker)
    tls = RedisBroker.from_url("rediss://:pw@example.invalid:6380/2")  # no connection yet
    assert tls._client.connection_pool.connection_class is redis.SSLConnection
    for bad in ("redis://host:notaport/0", "http://host/0"):
        with pytest.raises(ConfigurationError, match="redis://"):
            RedisBroker.from_url(bad)


# -- scripts: atomic, all or none ------------------------------------------------


def test_every_field_survives_the_round_trip(make_broker: Callable[..., RedisBroker]) -> None:
    broker = make_broker()
    sent = message(
        queue="mél: 1",
        priority=-3,
        eta=time.time() - 1.25,
        max_deliveries=7,
        key="",  # a key of its own, not "no key"
        timeout=2.5,
        retries=4,
        payload=bytes(range(256)),
        result_ttl=12.5,
        meta={"trace": "ünï"},
    )
    sent.task = "tâches.work"
    broker.enqueue([sent])
    (delivery,) = broker.claim(["mél: 1"], 1, 30)
    sent.attempt = 1
    assert delivery.message == sent
    assert broker.enqueue([message(key="")]) == [sent.id]
    result = bytes(reversed(range(256)))
    broker.ack(delivery, Outcome(State.SUCCEEDED, payload=result))
    job = broker.inspector.job(sent.id)
    assert job is not None
    assert (job.payload, job.result, job.eta, job.key) == (sent.payload, result, sent.eta, "")
    no_payload = message(payload=None)
    broker.enqueue([no_payload])
    assert broker.claim(None, 1, 30)[0].message.payload is None


def test_a_batch_with_a_stored_id_stores_nothing(make_broker: Callable[..., RedisBroker]) -> None:
    broker = make_broker()
    stored, fresh = message(), message(key="k")
    broker.enqueue([stored])
    with pytest.raises(ValueError, match=stored.id):
        broker.enqueue([fresh, stored])
    assert broker.inspector.job(fresh.id) is None
    assert broker.inspector.counts() == {"default": {State.QUEUED: 1}}


def test_an_enqueue_whose_answer_was_lost_is_stored_once(
    make_broker: Callable[..., RedisBroker], monkeypatch: pytest.MonkeyPatch
) -> None:
    broker = make_broker()
    script = broker._lua.enqueue
    calls: list[list[Any]] = []

    def answer_lost(args: list[Any]) -> Any:
        calls.append(list(args))
        result = script(args=args)
        if len(calls) == 1:  # the script ran, then the connection broke
            raise redis.ConnectionError("connection reset by peer")
        return result

    monkeypatch.setattr(broker._lua, "enqueue", answer_lost)
    batch = [message(), message(key="k"), message(key="k")]
    assert broker.enqueue(batch) == [batch[0].id, batch[1].id, batch[1].id]
    assert len(calls) == 2, "retried once"
    assert broker.inspector.counts() == {"default": {State.QUEUED: 2}}


def test_a_lone_enqueue_whose_answer_was_lost_is_stored_once(
    make_broker: Callable[..., RedisBroker], monkeypatch: pytest.MonkeyPatch
) -> None:
    # One message without a key goes through ENQUEUE_ONE: its replay is ours too.
    broker = make_broker()
    run = broker._lua.enqueue_one.packed
    calls: list[bytes] = []

    def answer_lost(count: int, args: bytes) -> Any:
        calls.append(args)
        result = run(count, args)
        if len(calls) == 1:
            raise redis.ConnectionError("connection reset by peer")
        return result

    monkeypatch.setattr(broker._lua.enqueue_one, "packed", answer_lost)
    lone = message()
    assert broker.enqueue([lone]) == [lone.id]
    assert len(calls) == 2, "retried once"
    assert broker.inspector.counts() == {"default": {State.QUEUED: 1}}
    with pytest.raises(ValueError, match="already exists"):
        broker.enqueue([lone])  # not a replay: the id is taken


_CLAIMER = """
import sys, time
from offload._brokers._redis import RedisBroker
from offload._message import Outcome, State
broker = RedisBroker.from_url(sys.argv[1], namespace=sys.argv[2])
print("ready", flush=True)
sys.stdin.readline()  # go
while deliveries := broker.claim(None, 3, 60):
    for delivery in deliveries:
        assert broker.ack(delivery, Outcome(State.SUCCEEDED))
        print(delivery.message.id, flush=True)
"""


def test_claims_are_race_free_across_threads_and_processes(
    make_broker: Callable[..., RedisBroker],
) -> None:
    # Every run must claim each id exactly once. That threads and processes both
    # took part is a matter of timing (on a loaded machine one side may drain
    # all before the other is scheduled): up to 3 runs, one of which must mix.
    for _ in range(3):
        threads, processes = _claim_with_threads_and_processes(make_broker())
        if threads and processes:
            break
    assert threads and processes, "both processes and threads claimed, in one of 3 runs"


def _claim_with_threads_and_processes(broker: RedisBroker) -> tuple[int, int]:
    """2,000 jobs claimed by 4 threads and 2 processes; how many each side claimed."""
    ids = broker.enqueue([message() for _ in range(2000)])
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    command = [sys.executable, "-c", _CLAIMER, URL, broker.namespace]
    processes = [
        subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        for _ in range(2)
    ]
    claimed: list[list[str]] = [[] for _ in range(4)]

    def claim(mine: list[str]) -> None:
        while deliveries := broker.claim(None, 3, 60):
            for delivery in deliveries:
                assert broker.ack(delivery, Outcome(State.SUCCEEDED))
                mine.append(delivery.message.id)

    try:
        for process in processes:
            assert process.stdout is not None and process.stdout.readline() == "ready\n"
        threads = [threading.Thread(target=claim, args=(mine,)) for mine in claimed]
        for process in processes:  # everyone starts at once
            assert process.stdin is not None
            process.stdin.write("go\n")
            process.stdin.flush()
        for thread in threads:
            thread.start()
        outputs = [process.communicate(timeout=60)[0].split() for process in processes]
        for thread in threads:
            thread.join(60)
    finally:
        for process in processes:
            process.kill()
            process.wait()
    everything = [job_id for part in [*claimed, *outputs] for job_id in part]
    assert len(everything) == 2000, "every id claimed once: none twice, none missed"
    assert sorted(everything) == sorted(ids)
    assert broker.inspector.counts() == {"default": {State.SUCCEEDED: 2000}}
    return sum(map(len, claimed)), sum(map(len, outputs))


# -- wake-ups ----------------------------------------------------------------------

_CONSUMER = """
import sys, time
import redis
from offload._brokers._redis import RedisBroker
from offload._message import Outcome, State
broker = RedisBroker.from_url(sys.argv[1], namespace=sys.argv[2])
report = redis.Redis.from_url(sys.argv[1])
for _ in range(int(sys.argv[3])):
    while not (deliveries := broker.claim(None, 1, 30)):
        broker.wait_for_messages(5.0)
    claimed = time.time()
    (delivery,) = deliveries
    broker.ack(delivery, Outcome(State.SUCCEEDED))
    report.rpush(broker.prefix + "latency", claimed - float(delivery.message.meta["sent"]))
"""


def test_wake_up_latency_from_enqueue_to_claim_across_processes(
    make_broker: Callable[..., RedisBroker],
) -> None:
    broker = make_broker()
    rounds = 200
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    command = [sys.executable, "-c", _CONSUMER, URL, broker.namespace, str(rounds)]
    consumer = subprocess.Popen(command, env=env)
    report = redis.Redis.from_url(URL)
    latencies: list[float] = []
    try:
        for _ in range(rounds):
            time.sleep(0.003)  # the consumer is blocked in BLPOP when the message comes
            broker.enqueue([message(meta={"sent": repr(time.time())})])
            answer = report.blpop([f"{broker.prefix}latency"], timeout=10)
            assert answer is not None, "the consumer never claimed the message"
            latencies.append(float(answer[1]))
        assert consumer.wait(30) == 0
    finally:
        consumer.kill()
        consumer.wait()
    median = statistics.median(latencies)
    print(f"\nRedis wake-up latency enqueue -> claim, median of {rounds}: {median * 1000:.2f} ms")
    assert median < 1.0


def test_interrupt_and_close_wake_a_blocked_waiter(
    make_broker: Callable[..., RedisBroker],
) -> None:
    broker = make_broker()
    for stop in (broker.interrupt, broker.close):
        returned = threading.Event()

        def wait(returned: threading.Event = returned) -> None:
            broker.wait_for_messages(30)
            returned.set()

        waiter = threading.Thread(target=wait, daemon=True)
        waiter.start()
        time.sleep(0.2)  # blocked in BLPOP by now
        started = time.monotonic()
        stop()
        assert returned.wait(1.0), f"{stop.__name__}() must wake a waiter within a second"
        assert time.monotonic() - started < 1.0


def test_a_wait_ends_at_the_next_eta(make_broker: Callable[..., RedisBroker]) -> None:
    broker = make_broker()
    broker.enqueue([message(eta=time.time() + 0.3)])
    started, waits = time.monotonic(), 0
    while not broker.claim(None, 1, 30):  # as a worker does
        broker.wait_for_messages(10)
        waits += 1
    assert 0.25 < time.monotonic() - started < 2.0
    # The enqueue's own wake-up token, then one block until the eta: no polling.
    assert waits <= 3


# -- restarts and outages ----------------------------------------------------------


def test_nothing_is_lost_when_redis_restarts(
    start_redis: Callable[..., PrivateRedis], make_broker: Callable[..., RedisBroker]
) -> None:
    server = start_redis()
    clock = FakeClock(time.time())
    broker = make_broker(server.url, clock=clock)
    ids = broker.enqueue([message() for _ in range(1000)])
    acked: dict[str, bytes] = {}
    while len(acked) < 500:
        for delivery in broker.claim(None, 50, 30):
            acked[delivery.message.id] = f"result {delivery.message.id}".encode()
            broker.ack(delivery, Outcome(State.SUCCEEDED, payload=acked[delivery.message.id]))
    held = broker.claim(None, 20, 30)  # running, unacked, when the server dies
    server.kill()
    server.start()
    assert broker.inspector.counts() == {
        "default": {State.SUCCEEDED: 500, State.RUNNING: 20, State.QUEUED: 480}
    }
    for job_id, result in acked.items():
        job = broker.inspector.job(job_id)
        assert job is not None and (job.state, job.result) == (State.SUCCEEDED, result)
    clock.advance(31)  # the held leases lapse: claimable again
    left = {d.message.id for d in broker.claim(None, 1000, 30)}
    assert left == set(ids) - set(acked)
    assert {d.message.id for d in held} <= left


def test_a_lost_server_fails_calls_fast_and_wakes_waiters(
    start_redis: Callable[..., PrivateRedis], make_broker: Callable[..., RedisBroker]
) -> None:
    server = start_redis()
    broker = make_broker(server.url)
    broker.enqueue([message()])
    returned = threading.Event()
    waiter = threading.Thread(
        target=lambda: (broker.wait_for_messages(30, ["elsewhere"]), returned.set()), daemon=True
    )
    waiter.start()
    time.sleep(0.2)
    server.kill()
    assert returned.wait(5), "a blocked waiter returns when the connection drops"
    lost = message()
    started = time.monotonic()
    with pytest.raises(BrokerUnavailable, match="unreachable"):
        broker.enqueue([lost])
    assert time.monotonic() - started < 5
    with pytest.raises(BrokerUnavailable):
        broker.claim(None, 1, 30)
    server.start()
    assert broker.inspector.job(lost.id) is None, "not reported stored, and not stored"
    later = message()
    assert broker.enqueue([later]) == [later.id]
    assert len(broker.claim(None, 10, 30)) == 2


def test_a_frozen_server_never_hangs_a_producer(
    start_redis: Callable[..., PrivateRedis], make_broker: Callable[..., RedisBroker]
) -> None:
    server = start_redis()
    broker = make_broker(f"{server.url}?socket_timeout=0.5&socket_connect_timeout=0.5")
    broker.enqueue([message()])
    server.signal(signal.SIGSTOP)
    try:
        started = time.monotonic()
        with pytest.raises(BrokerUnavailable):
            broker.enqueue([message(key="frozen")])
        assert time.monotonic() - started < 5
    finally:
        server.signal(signal.SIGCONT)
    # The frozen server ran the queued script once it woke: a timeout says
    # "unknown", and the key keeps a retry from storing it twice.
    again = message(key="frozen")
    (job_id,) = broker.enqueue([again])
    assert broker.enqueue([message(key="frozen")]) == [job_id]


# -- end to end --------------------------------------------------------------------


def test_an_app_on_redis_runs_calls_with_an_embedded_worker(
    make_broker: Callable[..., RedisBroker],
) -> None:
    url = require_redis()
    namespace = f"test-{uuid.uuid4().hex}"
    app = offload.App(url, namespace=namespace, embedded_worker=True, name="redis-e2e")
    try:
        double = app.task(name="double")(_double)
        handles = double.map(range(20))
        assert [h.result(timeout=20) for h in handles] == [x * 2 for x in range(20)]
        job = app.job(handles[0].id)
        assert job is not None and job.state is State.SUCCEEDED
    finally:
        app.shutdown()
        make_broker(namespace=namespace).drop()


def _double(x: int) -> int:
    return x * 2


def test_the_lua_scripts_are_loaded_again_after_a_flush(
    start_redis: Callable[..., PrivateRedis], make_broker: Callable[..., RedisBroker]
) -> None:
    server = start_redis()  # not the shared server: a flush there disturbs its other users
    broker = make_broker(server.url)
    broker.enqueue([message()])
    redis.Redis(port=server.port).script_flush()  # as a restarted server forgets them
    assert len(broker.claim(None, 1, 30)) == 1
