"""Fixtures of the PostgreSQL broker's own tests: a server, a namespace, brokers on it."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from offload._brokers._postgres import PostgresBroker
from servers import drop_postgres_schema, require_postgres


@pytest.fixture(scope="module")
def server() -> str:
    """The server's URL; skips (fails under CI) when it cannot be reached."""
    return require_postgres()


@pytest.fixture
def namespace(server: str) -> Iterator[str]:
    """A fresh namespace; its schema is dropped after the test."""
    name = f"t_{uuid.uuid4().hex}"
    yield name
    drop_postgres_schema(f"offload_{name}")


@pytest.fixture
def make_broker(server: str, namespace: str) -> Iterator[Callable[..., PostgresBroker]]:
    """Brokers on the test's namespace (unless told otherwise), closed after it."""
    made: list[PostgresBroker] = []

    def make(**options: Any) -> PostgresBroker:
        options.setdefault("namespace", namespace)
        broker = PostgresBroker(options.pop("url", server), **options)
        made.append(broker)
        return broker

    yield make
    for broker in made:
        broker.close()


@pytest.fixture
def broker(make_broker: Callable[..., PostgresBroker]) -> PostgresBroker:
    """A broker on the test's namespace."""
    return make_broker()
