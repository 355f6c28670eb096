"""Types and helpers shared by the contract tests (importable: this folder is on sys.path)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from offload._brokers import Broker, Waker
from offload._brokers._base import Inspectable
from offload._message import Message

LEASE = 30.0
"""Seconds: the lease of claims whose lease the test does not care about."""


class ContractBroker(Broker, Inspectable, Waker, Protocol):
    """What the suite holds every broker to: the contract, an inspector and waking."""


Factory = Callable[..., ContractBroker]
MessageFactory = Callable[..., Message]


def claim_ids(
    broker: ContractBroker, limit: int = 100, queues: list[str] | None = None
) -> list[str]:
    """The ids of what one claim hands out, in the order it hands them out."""
    return [delivery.message.id for delivery in broker.claim(queues, limit, LEASE)]
