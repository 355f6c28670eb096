"""The Redis broker's shared command connection: group commit without weakening anything.

Against the real server (``OFFLOAD_TEST_REDIS_URL``), keys under a fresh
prefix, deleted after each test.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator

import pytest

redis = pytest.importorskip("redis")

from offload._brokers._redis.link import Link, Script, WaitLink  # noqa: E402
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


# -- the waits' connection (WaitLink): a BLPOP and a command behind it --------


def _key(client: redis.Redis, name: str) -> str:
    return f"{client.prefix}{name}"  # type: ignore[attr-defined]


def _until_blocked(client: redis.Redis, connection_id: int) -> None:
    """Return once the connection ``connection_id`` is blocked in a ``BLPOP``."""
    deadline = time.monotonic() + 5
    while b"cmd=blpop" not in client.execute_command("CLIENT", "LIST", "ID", connection_id):
        assert time.monotonic() < deadline, "the waiter never blocked"
        time.sleep(0.01)


def test_waits_keep_one_connection_of_their_own_and_read_both_replies(
    client: redis.Redis,
) -> None:
    # A pool whose one connection is taken: a wait that went through the
    # pool would fail with "Too many connections".
    pool = redis.ConnectionPool.from_url(require_redis(), max_connections=1)
    try:
        taken = pool.get_connection()
    except TypeError:  # redis-py 5.0 asks for a command name
        taken = pool.get_connection("PING")
    waits = WaitLink(pool)
    wake = _key(client, "wake")
    seen = set()
    for _ in range(3):
        client.lpush(wake, "1")
        woken, own_id = waits.blocked_then(("BLPOP", wake, "5"), ("CLIENT", "ID"))
        assert woken == [wake.encode(), b"1"]
        seen.add(own_id)
    assert len(seen) == 1, "every wait went through the one kept connection"
    waits.close()
    pool.release(taken)
    pool.disconnect()


def test_a_second_waiter_meanwhile_takes_a_pool_connection(client: redis.Redis) -> None:
    waits = WaitLink(client.connection_pool)
    first, second = _key(client, "first"), _key(client, "second")
    kept = waits.blocked_then(("LPUSH", first, "x"), ("CLIENT", "ID"))[1]
    client.delete(first)
    answers: list[object] = []
    blocked = threading.Thread(
        target=lambda: answers.append(waits.blocked_then(("BLPOP", first, "10"), ("CLIENT", "ID")))
    )
    blocked.start()
    try:
        _until_blocked(client, kept)
        client.lpush(second, "1")
        woken, other = waits.blocked_then(("BLPOP", second, "5"), ("CLIENT", "ID"))
        assert woken == [second.encode(), b"1"]
        assert other != kept, "the kept connection was busy: a pool connection served the wait"
    finally:
        client.lpush(first, "1")
        blocked.join(10)
    assert answers == [([first.encode(), b"1"], kept)]
    waits.close()


def test_an_error_reply_behind_the_wait_is_returned_and_the_connection_stays_in_step(
    client: redis.Redis,
) -> None:
    waits = WaitLink(client.connection_pool)
    wake, text = _key(client, "wake"), _key(client, "text")
    client.set(text, "not a number")
    client.lpush(wake, "1", "1")
    woken, failed = waits.blocked_then(("BLPOP", wake, "5"), ("INCR", text))
    assert woken == [wake.encode(), b"1"]
    assert isinstance(failed, redis.ResponseError)
    assert waits.blocked_then(("BLPOP", wake, "5"), ("GET", text)) == (
        [wake.encode(), b"1"],
        b"not a number",
    )
    with pytest.raises(redis.ResponseError):  # the wait's own error is raised
        waits.blocked_then(("BLPOP", text, "1"), ("PING",))
    assert waits.blocked_then(("LPUSH", wake, "1"), ("LPOP", wake)) == (1, b"1")
    waits.close()


def test_close_ends_a_blocked_wait_and_a_cut_connection_is_replaced(client: redis.Redis) -> None:
    waits = WaitLink(client.connection_pool)
    empty = _key(client, "empty")
    kept = waits.blocked_then(("PING",), ("CLIENT", "ID"))[1]
    failures: list[BaseException] = []

    def wait() -> None:
        try:
            waits.blocked_then(("BLPOP", empty, "10"), ("PING",))
        except BaseException as error:
            failures.append(error)

    blocked = threading.Thread(target=wait)
    blocked.start()
    _until_blocked(client, kept)
    started = time.monotonic()
    waits.close()
    blocked.join(5)
    assert time.monotonic() - started < 1.0, "closing ended the wait at once"
    assert len(failures) == 1 and isinstance(failures[0], (redis.ConnectionError, OSError))
    again = waits.blocked_then(("PING",), ("CLIENT", "ID"))[1]
    assert again != kept, "a closed connection is replaced by a new one"
    assert client.execute_command("CLIENT", "KILL", "ID", again) == 1  # this one only
    with pytest.raises((redis.ConnectionError, ConnectionError)):
        waits.blocked_then(("PING",), ("PING",))
    assert waits.blocked_then(("PING",), ("PING",))[0] in (b"PONG", True)
    waits.close()
