"""Turning a call's arguments (and a task's result) into bytes and back.

``JsonSerializer`` (``_json``) is the default: JSON with exact round trips of
common Python types. ``PickleSerializer`` (``_pickle``) is opt-in and signed
with HMAC-SHA256. Both follow ``Serializer`` (``_base``); this module holds
what works with any of them: a call's arguments as one payload.
"""

from __future__ import annotations

from typing import Any

from .._errors import NotSerializable, PayloadRejected, PayloadTooLarge
from ._base import DEFAULT_MAX_SIZE, ModulePolicy, Serializer, imported_modules
from ._json import JsonSerializer, plain_call
from ._pickle import PickleSerializer


def encode_call(serializer: Serializer, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bytes:
    """One payload for a call's arguments; an error names the culprit (``args[1].user``).

    >>> encode_call(JsonSerializer(), (1, "a"), {"when": None})
    b'[[1,"a"],{"when":null}]'
    """
    # The default serializer with plain arguments skips the walk (the same bytes).
    data = plain_call(args, kwargs) if type(serializer) is JsonSerializer else None
    if data is None:
        try:
            data = serializer.encode([list(args), kwargs], path="arguments")
        except PayloadTooLarge:
            raise
        except NotSerializable as exc:
            # Encoding each argument alone again, on the failure path only, names
            # the argument for any serializer (pickle included) at no cost otherwise.
            raise _locate(serializer, args, kwargs) or exc from None
    limit = serializer.max_size  # check_size, inline: this is every durable call's path
    if limit is not None and len(data) > limit:
        raise PayloadTooLarge("arguments", "list", len(data), limit)
    return data


def decode_call(serializer: Serializer, data: bytes) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The ``(args, kwargs)`` that ``encode_call`` was given."""
    value = serializer.decode(data)
    if (
        type(value) is list
        and len(value) == 2
        and type(value[0]) is list
        and type(value[1]) is dict
        and (not value[1] or all(type(key) is str for key in value[1]))
    ):
        return tuple(value[0]), value[1]
    raise PayloadRejected(
        f"the payload holds a {type(value).__name__}, not a call's [args, kwargs]; "
        "producer and worker must use the same serializer and offload version"
    )


def _locate(
    serializer: Serializer, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> NotSerializable | None:
    named = [(f"args[{i}]", arg) for i, arg in enumerate(args)]
    named += [(f"kwargs[{key!r}]", arg) for key, arg in kwargs.items()]
    for path, arg in named:
        try:
            serializer.encode(arg, path=path)
        except PayloadTooLarge:
            continue
        except NotSerializable as exc:
            return exc
    return None


__all__ = [
    "DEFAULT_MAX_SIZE",
    "JsonSerializer",
    "ModulePolicy",
    "PickleSerializer",
    "Serializer",
    "decode_call",
    "encode_call",
    "imported_modules",
]
