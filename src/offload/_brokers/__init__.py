"""Storage and claiming of messages: no policy lives here."""

from __future__ import annotations

from ._base import Broker, Waker
from ._memory import MemoryBroker

__all__ = ["Broker", "MemoryBroker", "Waker"]
