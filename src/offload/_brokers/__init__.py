"""Storage and claiming of messages: no policy lives here."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._base import Broker, Inspector
from ._claiming import Waker
from ._memory import MemoryBroker

if TYPE_CHECKING:
    from ._sqlite import SqliteBroker

__all__ = ["Broker", "Inspector", "MemoryBroker", "SqliteBroker", "Waker"]


def __getattr__(name: str) -> Any:
    # Imported on first use: ``import offload`` need not load sqlite3.
    if name == "SqliteBroker":
        from ._sqlite import SqliteBroker

        return SqliteBroker
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
