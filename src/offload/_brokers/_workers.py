"""A worker's registry entry as brokers store it: one JSON object, read back with care.

An entry is data another process wrote: it is checked field by field when
read, and one that does not fit ``WorkerInfo`` is shown as what it is (a
worker of unknown shape) rather than breaking the listing.
"""

from __future__ import annotations

import json
from typing import Any

from .._message import storable
from ._base import WorkerInfo

MAX_RUNNING_LISTED = 1000
"""Job ids stored per entry: a worker of 10,000 async slots need not write them all each beat."""


def encode_worker(info: WorkerInfo) -> str:
    """The JSON text of a registry entry."""
    data = info._asdict()
    data["queues"] = list(info.queues)
    data["running"] = list(info.running[:MAX_RUNNING_LISTED])
    return json.dumps(data, separators=(",", ":"))


def decode_worker(text: str | bytes, worker_id: str) -> WorkerInfo:
    """The entry stored under ``worker_id``; a malformed one keeps its id, ``?`` for the rest."""
    last_seen = 0.0
    try:
        data = json.loads(text)
        if not isinstance(data, dict):
            raise TypeError("not an object")
        return WorkerInfo(
            id=worker_id,
            host=_text(data["host"]),
            pid=_count(data["pid"]),
            queues=tuple(_text(q) for q in _list(data["queues"])),
            pool=_text(data["pool"]),
            concurrency=_count(data["concurrency"]),
            started=_number(data["started"]),
            last_seen=_number(data["last_seen"]),
            running=tuple(_text(j) for j in _list(data["running"])),
        )
    except (ValueError, TypeError, KeyError):
        return WorkerInfo(worker_id, "?", 0, (), "?", 0, last_seen, last_seen, ())


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError("not text")
    return storable(value)


def _count(value: Any) -> int:
    if type(value) is not int or value < 0:
        raise TypeError("not a count")
    return value


def _number(value: Any) -> float:
    if type(value) not in (int, float):
        raise TypeError("not a number")
    return float(value)


def _list(value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise TypeError("not a list")
    return value
