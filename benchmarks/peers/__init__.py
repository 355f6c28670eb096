"""Drivers of the durable systems: one module per system and backend.

Each module builds its library's app from the environment (see
``servers.prepare``) at import, so it is imported only in the child that
measures it, after ``prepare``; ``load`` does both in that order.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from pathlib import Path

from benchmarks.peers import servers
from benchmarks.peers.base import Driver
from benchmarks.systems import VENVS

# backend -> system -> driver module; offload first, then the peers.
MODULES: dict[str, dict[str, str]] = {
    "sqlite": {"offload": "offload_durable", "Huey": "huey_sqlite"},
    "redis": {
        "offload": "offload_durable",
        "Huey": "huey_redis",
        "RQ": "rq_redis",
        "Celery": "celery_redis",
        "Dramatiq": "dramatiq_redis",
        "arq": "arq_redis",
    },
    "postgres": {"offload": "offload_durable", "Procrastinate": "procrastinate_pg"},
}


# system -> the distributions whose versions the record notes.
DISTRIBUTIONS: dict[str, tuple[str, ...]] = {
    "offload": ("offload",),
    "Huey": ("huey",),
    "RQ": ("rq",),
    "Celery": ("celery", "kombu"),
    "Dramatiq": ("dramatiq",),
    "Procrastinate": ("procrastinate",),
    "arq": ("arq",),
}
# backend -> the client library every system on it goes through (SQLite: the stdlib's).
CLIENTS: dict[str, tuple[str, ...]] = {"sqlite": (), "redis": ("redis",), "postgres": ("psycopg",)}


def versions(backend: servers.Backend, system: str) -> dict[str, str]:
    """The installed versions of what measuring ``system`` on ``backend`` imports.

    A system with a venv of its own may have another version of the client
    library than the rest: that one is named after the system ("redis (arq)").
    """
    own = system in VENVS
    found = {name: importlib.metadata.version(name) for name in DISTRIBUTIONS[system]}
    for name in CLIENTS[backend]:
        found[f"{name} ({system})" if own else name] = importlib.metadata.version(name)
    return found


def systems(backend: servers.Backend) -> tuple[str, ...]:
    """The systems measured on ``backend``, offload first."""
    return tuple(MODULES[backend])


def load(backend: servers.Backend, system: str, workdir: Path) -> Driver:
    """A clean store for ``backend``, then ``system``'s driver on it."""
    servers.prepare(backend, workdir)
    module = importlib.import_module(f"benchmarks.peers.{MODULES[backend][system]}")
    driver: Driver = module.Driver()
    return driver
