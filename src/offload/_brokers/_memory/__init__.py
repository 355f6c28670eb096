"""The in-process broker: the claim path (``broker``) and inspection (``inspector``)."""

from .broker import MemoryBroker
from .inspector import MemoryInspector

__all__ = ["MemoryBroker", "MemoryInspector"]
