"""The Redis and PostgreSQL servers the tests use, and what happens when one is down.

``OFFLOAD_TEST_REDIS_URL`` and ``OFFLOAD_TEST_POSTGRES_URL`` pick the
servers (default: this machine's). When one cannot be reached its tests
skip, saying why; under ``CI`` they fail instead, since CI must run them.
``skip_or_fail`` does the same for any test that needs what a laptop may
lack (root, network namespaces, server binaries).
"""

from __future__ import annotations

import contextlib
import functools
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest

REDIS_URL = os.environ.get("OFFLOAD_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
POSTGRES_URL = os.environ.get(
    "OFFLOAD_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)


@functools.cache
def _redis_unreachable() -> str | None:
    try:
        import redis
    except ImportError:
        return 'the redis package is not installed: pip install -e ".[dev]" in this clone'
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2, socket_timeout=2).ping()
    except redis.RedisError as error:
        return f"no Redis at {REDIS_URL} ({error}); start one or set OFFLOAD_TEST_REDIS_URL"
    return None


@functools.cache
def _postgres_unreachable() -> str | None:
    try:
        import psycopg
    except ImportError:
        return 'the psycopg package is not installed: pip install -e ".[dev]" in this clone'
    try:
        with psycopg.connect(POSTGRES_URL, connect_timeout=3) as connection:
            connection.execute("SELECT 1")
    except psycopg.Error as error:
        return f"PostgreSQL at {POSTGRES_URL} is not reachable: {error}".strip()
    return None


def skip_or_fail(reason: str) -> NoReturn:
    """Skip the test, saying why; under ``CI`` fail instead: CI must run every test."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set: these tests must run)")
    pytest.skip(reason)


def _require(reason: str | None) -> None:
    if reason is not None:
        skip_or_fail(reason)


def require_redis() -> str:
    """The Redis test server's URL; skips (fails under CI) when it is down."""
    _require(_redis_unreachable())
    return REDIS_URL


def require_postgres() -> str:
    """The PostgreSQL test server's URL; skips (fails under CI) when it is down."""
    _require(_postgres_unreachable())
    return POSTGRES_URL


def drop_postgres_schema(schema: str) -> None:
    import psycopg

    with psycopg.connect(POSTGRES_URL, autocommit=True) as connection:
        connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture(name="broker")
def redis_broker() -> Iterator[Any]:
    """A ``RedisBroker`` in a namespace of its own, dropped after the test.

    Import it into a test module to have it as that module's ``broker``.
    """
    from offload._brokers._redis import RedisBroker

    broker = RedisBroker.from_url(require_redis(), namespace=f"test-{uuid.uuid4().hex}")
    yield broker
    broker.drop()
    broker.close()


@contextlib.contextmanager
def scratch_url(kind: str, folder: Path) -> Iterator[str]:
    """A broker URL of ``kind`` (sqlite, redis, postgres) that is the test's alone.

    A file in ``folder``; on the servers, a namespace in the URL (so that
    worker processes given the URL share it), deleted afterwards.
    """
    namespace = f"t_{uuid.uuid4().hex}"
    if kind == "sqlite":
        yield f"sqlite:///{folder / 'jobs.db'}"
    elif kind == "redis":
        url = f"{require_redis()}?namespace={namespace}"
        yield url
        from offload._brokers._redis import RedisBroker

        broker = RedisBroker.from_url(url)
        broker.drop()
        broker.close()
    else:
        yield f"{require_postgres()}?namespace={namespace}"
        drop_postgres_schema(f"offload_{namespace}")
