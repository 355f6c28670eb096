"""Fixtures shared by the Redis broker's test modules (a module may define its own).

``make_broker(url=None, **options)`` makes Redis brokers of the test server
(or ``url``), each in a namespace of its own, dropped and closed after the
test; ``raw`` is a plain client of that server, to read and write behind a
broker's back.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from servers import require_redis


@pytest.fixture
def make_broker() -> Iterator[Callable[..., Any]]:
    from offload._brokers._redis import RedisBroker

    made: list[RedisBroker] = []

    def make(url: str | None = None, **options: Any) -> RedisBroker:
        options.setdefault("namespace", f"test-{uuid.uuid4().hex}")
        broker = RedisBroker(url or require_redis(), **options)
        made.append(broker)
        return broker

    yield make
    for broker in made:
        broker.drop()
        broker.close()


@pytest.fixture
def raw() -> Iterator[Any]:
    import redis

    client = redis.Redis.from_url(require_redis())
    yield client
    client.close()
