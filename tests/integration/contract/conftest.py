"""The broker contract suite: every test runs once per broker.

A broker joins by adding a factory to ``FACTORIES``: a function of the
fake clock, a fresh path (for brokers that keep files) and the broker's
options, returning a broker built on that clock. A factory may call
``pytest.skip`` when its server is not there (Redis, PostgreSQL).

Time is a ``FakeClock``: leases, ETAs and TTLs move with
``clock.advance(...)``; nothing here sleeps.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from contract_support import ContractBroker, Factory

from offload._brokers import MemoryBroker, SqliteBroker
from offload._message import Message, new_id
from offload.testing import FakeClock


def memory_broker(clock: FakeClock, path: Path, **options: Any) -> ContractBroker:
    return MemoryBroker(clock, **options)


def sqlite_broker(clock: FakeClock, path: Path, **options: Any) -> ContractBroker:
    return SqliteBroker(path.with_suffix(".db"), clock=clock, **options)


FACTORIES: dict[str, Factory] = {"memory": memory_broker, "sqlite": sqlite_broker}

# Server brokers bring their factories from their own modules (each skips,
# or fails under CI=true, when its server is down).
for _module in ("server_redis", "server_postgres"):
    try:
        FACTORIES.update(__import__(_module).FACTORIES)
    except ModuleNotFoundError as _missing:
        if _missing.name != _module:
            raise


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=sorted(FACTORIES))
def make_broker(
    request: pytest.FixtureRequest, clock: FakeClock, tmp_path: Path
) -> Iterator[Callable[..., ContractBroker]]:
    """``make_broker(reuse_window=60, ...)``: brokers of this test's kind, closed after it."""
    made: list[ContractBroker] = []

    def make(**options: Any) -> ContractBroker:
        broker = FACTORIES[request.param](clock, tmp_path / f"broker-{len(made)}", **options)
        made.append(broker)
        return broker

    yield make
    for broker in made:
        broker.close()


@pytest.fixture
def broker(make_broker: Callable[..., ContractBroker]) -> ContractBroker:
    """A broker with the default options."""
    return make_broker()


@pytest.fixture
def message(clock: FakeClock) -> Callable[..., Message]:
    """``message(priority=5, key="k", ...)``: a message as a durable app sends it.

    Arguments travel encoded (``payload``), as every durable broker needs.
    """

    def make(task: str = "tasks.work", **fields: Any) -> Message:
        fields.setdefault("payload", b'{"args": []}')
        fields.setdefault("created", clock.now())
        return Message(new_id(), task, (), {}, **fields)

    return make
