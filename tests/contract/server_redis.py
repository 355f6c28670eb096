"""The Redis broker in the contract suite: a namespace of its own per broker, deleted on close.

``OFFLOAD_TEST_REDIS_URL`` names the server (``redis://127.0.0.1:6379/0``
by default). When it cannot be reached the tests skip, saying why; under
``CI`` they fail instead.
"""

from __future__ import annotations

import functools
import os
import uuid
from pathlib import Path
from typing import Any

import pytest

URL = os.environ.get("OFFLOAD_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@functools.cache
def _unreachable() -> str | None:
    """Why the test server cannot be used, or None; asked once per session."""
    try:
        import redis
    except ImportError:
        return 'the redis package is not installed: pip install "offload[redis]"'
    try:
        redis.Redis.from_url(URL, socket_connect_timeout=2, socket_timeout=2).ping()
    except redis.RedisError as error:
        return f"no Redis at {URL} ({error}); start one or set OFFLOAD_TEST_REDIS_URL"
    return None


def require_redis() -> str:
    """The test server's URL; skips (fails under CI) when it is down."""
    reason = _unreachable()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return URL


def redis_broker(clock: Any, path: Path, **options: Any) -> Any:
    require_redis()
    from offload._brokers._redis import RedisBroker

    class DisposableRedisBroker(RedisBroker):
        """Deletes its namespace's keys when closed: tests leave nothing behind."""

        def close(self) -> None:
            try:
                self.drop()
            finally:
                super().close()

    namespace = f"test-{uuid.uuid4().hex}"
    return DisposableRedisBroker.from_url(URL, clock=clock, namespace=namespace, **options)


FACTORIES = {"redis": redis_broker}
