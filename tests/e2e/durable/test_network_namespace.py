"""A worker on another (network) host: its own network namespace, reached over a veth link.

The worker's namespace has no route to the test machine's loopback, so the
one thing it shares with the producer is the broker, at a real address.
Needs root and iproute2; skipped, saying why, where namespaces are not
permitted (failed instead under ``CI``, as the server tests are).
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import TESTS, wait_until
from servers import skip_or_fail

WAIT = 60.0


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


@pytest.fixture
def host() -> Iterator[tuple[str, str]]:
    """A network namespace linked to this one: (namespace name, this side's address)."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        skip_or_fail("network namespaces need root and iproute2 (ip)")
    tag = uuid.uuid4().hex[:6]
    name, here, there = f"offload-{tag}", f"voh{tag}", f"von{tag}"
    subnet = f"10.213.{random.randrange(256)}"  # the test hosts' own link, nothing else
    try:
        _ip("netns", "add", name)
    except subprocess.CalledProcessError as error:
        skip_or_fail(f"network namespaces are not permitted here: {error.stderr.strip()}")
    try:
        _ip("link", "add", here, "type", "veth", "peer", "name", there)
        _ip("link", "set", there, "netns", name)
        _ip("addr", "add", f"{subnet}.1/30", "dev", here)
        _ip("link", "set", here, "up")
        _ip("netns", "exec", name, "ip", "addr", "add", f"{subnet}.2/30", "dev", there)
        _ip("netns", "exec", name, "ip", "link", "set", there, "up")
        _ip("netns", "exec", name, "ip", "link", "set", "lo", "up")
        yield name, f"{subnet}.1"
    finally:
        for cleanup in (["netns", "del", name], ["link", "del", here]):
            subprocess.run(["ip", *cleanup], check=False, capture_output=True, timeout=10)


@pytest.fixture
def redis_on(host: tuple[str, str], tmp_path: Path) -> Iterator[str]:
    """A private Redis listening on this side of the link: its URL."""
    if shutil.which("redis-server") is None:
        skip_or_fail("redis-server is not installed")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [
            "redis-server",
            "--bind",
            host[1],
            "--port",
            str(port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path),
            "--protected-mode",  # it listens on the test hosts' private link only
            "no",
        ],
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        import redis

        client = redis.Redis(host=host[1], port=port)
        assert wait_until(lambda: _pings(client), 10), "the private Redis did not start"
        yield f"redis://{host[1]}:{port}/0?namespace=netns"
    finally:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait(10)


def _pings(client: object) -> bool:
    try:
        return bool(client.ping())  # type: ignore[attr-defined]
    except Exception:
        return False


def test_a_worker_in_another_network_namespace_runs_the_tasks(
    host: tuple[str, str], redis_on: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    namespace, address = host
    env = {**os.environ, "OFFLOAD_TEST_URL": redis_on, "PYTHONPATH": str(TESTS)}
    isolated = subprocess.run(
        [
            "ip",
            "netns",
            "exec",
            namespace,
            sys.executable,
            "-c",
            "import socket; s = socket.socket(); s.settimeout(1); "
            "print(s.connect_ex(('127.0.0.1', 6379)))",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert isolated.stdout.strip() != "0", "the namespace must not see this host's loopback"
    worker = subprocess.Popen(
        [
            "ip",
            "netns",
            "exec",
            namespace,
            sys.executable,
            "-m",
            "offload",
            "worker",
            "durable_tasks:app",
            "-c",
            "4",
            "--log-level",  # at INFO, a line per job would fill the unread pipe
            "WARNING",
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    monkeypatch.setenv("OFFLOAD_TEST_URL", redis_on)
    sys.modules.pop("durable_tasks", None)
    import durable_tasks

    try:
        handles = durable_tasks.add.map(range(200), range(200))
        assert [h.result(timeout=WAIT) for h in handles] == [2 * i for i in range(200)]
        seen_from_worker = durable_tasks.addresses().result(timeout=WAIT)
        assert address.rsplit(".", 1)[0] + ".2" in seen_from_worker  # the other host's address
        assert address not in seen_from_worker
    finally:
        durable_tasks.app.broker.drop()  # type: ignore[attr-defined]
        durable_tasks.app.shutdown(wait=False)
        sys.modules.pop("durable_tasks", None)
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(10)
        if worker.stdout is not None:
            worker.stdout.close()
