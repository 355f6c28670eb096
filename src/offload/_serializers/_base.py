"""What every serializer shares: the protocol, the size limit, the class policy."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, Protocol

from .._errors import ConfigurationError, PayloadTooLarge

DEFAULT_MAX_SIZE = 1_048_576
"""1 MiB: a broker row, not a blob store."""


class Serializer(Protocol):
    """What turns values into bytes and back: JSON by default, pickle on request.

    ``encode`` raises ``NotSerializable`` (``PayloadTooLarge`` over
    ``max_size``) naming ``path``; ``decode`` raises ``PayloadRejected``.
    """

    name: str
    """A short identifier (``"json"``, ``"pickle"``) for logs and messages."""
    max_size: int | None
    """The largest payload ``encode`` makes, in bytes; ``None`` for no limit."""

    def encode(self, value: object, *, path: str = "value") -> bytes:
        """The bytes of ``value``; ``path`` names it in errors."""

    def decode(self, data: bytes) -> Any:
        """The value that ``encode`` was given."""


def check_limit(max_size: int | None) -> int | None:
    """``max_size`` if it is a valid limit (a positive int, or None)."""
    if max_size is not None and (type(max_size) is not int or max_size <= 0):
        raise ConfigurationError(
            f"max_size must be a positive int (bytes) or None, not {max_size!r}"
        )
    return max_size


def check_size(data: bytes, limit: int | None, path: str, type_name: str) -> None:
    """``PayloadTooLarge`` if ``data`` is over ``limit``, naming the value at ``path``."""
    if limit is not None and len(data) > limit:
        raise PayloadTooLarge(path, type_name, len(data), limit)


ModulePolicy = Callable[[str], bool]
"""Whether a payload may name classes (dataclass and enum tags) of a module."""


def imported_modules(module: str) -> bool:
    """The policy of a serializer made without one: modules this process has
    imported already. Decoding never imports anything then."""
    return module in sys.modules
