"""The PostgreSQL broker in the contract suite: a schema of its own for every broker.

``OFFLOAD_TEST_POSTGRES_URL`` picks the server (default: the local one,
database ``test``). Each broker gets a fresh namespace (schema
``offload_t_{uuid}``), dropped when the test closes it. When the server
cannot be reached, the tests are skipped with the reason, or fail when
``CI`` is set (CI must run them).
"""

from __future__ import annotations

import functools
import os
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest

from offload._brokers._postgres import PostgresBroker
from offload.testing import FakeClock

URL = os.environ.get("OFFLOAD_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


@functools.cache
def _unreachable(url: str) -> str | None:
    """Why the server cannot be used, or None; asked once per test run."""
    try:
        with psycopg.connect(url, connect_timeout=3) as connection:
            connection.execute("SELECT 1")
    except psycopg.Error as error:
        return f"PostgreSQL at {url} is not reachable: {error}".strip()
    return None


def require_server(url: str = URL) -> None:
    """Skip (fail under CI) when the test server is down."""
    reason = _unreachable(url)
    if reason is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set: the PostgreSQL tests must run)")
    pytest.skip(reason)


def drop_schema(schema: str, url: str = URL) -> None:
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


class TestBroker(PostgresBroker):
    """A broker whose close drops its schema: every test leaves the database as it was."""

    __test__ = False  # not a test class, whatever its name

    def close(self) -> None:
        super().close()
        drop_schema(self.schema)


def fresh_namespace() -> str:
    return f"t_{uuid.uuid4().hex}"


def postgres_broker(clock: FakeClock, path: Path, **options: Any) -> TestBroker:
    require_server()
    return TestBroker(URL, clock=clock, namespace=fresh_namespace(), **options)


FACTORIES = {"postgresql": postgres_broker}
