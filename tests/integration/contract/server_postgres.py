"""The PostgreSQL broker in the contract suite: a schema of its own for every broker.

``OFFLOAD_TEST_POSTGRES_URL`` picks the server (default: the local one,
database ``test``). Each broker gets a fresh namespace (schema
``offload_t_{uuid}``), dropped when the test closes it. When the server
cannot be reached, the tests are skipped with the reason, or fail when
``CI`` is set (CI must run them).
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from offload._brokers._postgres import PostgresBroker
from offload.testing import FakeClock
from servers import drop_postgres_schema, require_postgres


class TestBroker(PostgresBroker):
    """A broker whose close drops its schema: every test leaves the database as it was."""

    __test__ = False  # not a test class, whatever its name

    def close(self) -> None:
        super().close()
        drop_postgres_schema(self.schema)


def fresh_namespace() -> str:
    return f"t_{uuid.uuid4().hex}"


def postgres_broker(clock: FakeClock, path: Path, **options: Any) -> TestBroker:
    url = require_postgres()
    return TestBroker(url, clock=clock, namespace=fresh_namespace(), **options)


FACTORIES = {"postgresql": postgres_broker}
