"""The Redis broker's shared command connection: group commit without weakening anything.

Against the real server (``OFFLOAD_TEST_REDIS_URL``), keys under a fresh
prefix, deleted after each test.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator

import pytest

redis = pytest.importorskip("redis")

from offload._brokers._redis.link import Link, Script  # noqa: E402
from servers import require_redis  # noqa: E402


@pytest.fixture
def client() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(require_redis())
    prefix = f"test-link-{uuid.uuid4().hex}:"
    client.prefix = prefix  # type: ignore[attr-defined]
    yield client
    keys = list(client.scan_iter(match=f"{prefix}*"))
    if keys:
        client.delete(*keys)
    client.close()


def test_threads_calling_at_once_share_round_trips_and_each_gets_its_own_reply(
    client: redis.Redis,
) -> None:
    link = Link(client.connection_pool)
    key = f"{client.prefix}counter"  # type: ignore[attr-defined]
    replies: dict[int, list[int]] = {}
    start = threading.Barrier(8)

    def work(n: int) -> None:
        start.wait()
        replies[n] = [int(link.call("INCR", key)) for _ in range(200)]

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    everything = sorted(value for values in replies.values() for value in values)
    assert everything == list(range(1, 1601)), "every increment answered once, to its caller"
    for values in replies.values():
        assert values == sorted(values), "a thread's own calls stay in order"
    assert int(client.get(key)) == 1600
    link.close()


def test_an_error_reply_goes_to_its_own_caller_only(client: redis.Redis) -> None:
    link = Link(client.connection_pool)
    key = f"{client.prefix}text"  # type: ignore[attr-defined]
    link.call("SET", key, "not a number")
    with pytest.raises(redis.ResponseError):
        link.call("INCR", key)
    assert link.call("GET", key) == b"not a number", "the connection is still in step"
    link.close()


def test_a_cut_connection_fails_the_call_and_the_next_call_reconnects(
    client: redis.Redis,
) -> None:
    link = Link(client.connection_pool)
    own_id = link.call("CLIENT", "ID")
    assert client.execute_command("CLIENT", "KILL", "ID", own_id) == 1  # this one only
    with pytest.raises((redis.ConnectionError, ConnectionError)):
        link.call("PING")
    assert link.call("PING") in (b"PONG", True)
    link.close()


def test_a_script_the_server_forgot_is_loaded_again(client: redis.Redis) -> None:
    link = Link(client.connection_pool)
    script = Script(link, f"return '{uuid.uuid4().hex}' .. ARGV[1]")
    first = script(["x"])
    assert client.script_exists(script.sha) == [True], "EVALSHA on NOSCRIPT loaded it"
    assert script(["x"]) == first
    link.close()
