"""The three stores, and a clean one for every measurement.

- SQLite: a fresh temporary directory per child (``BENCH_SQLITE_DIR``).
- Redis: database 15 of the machine's server, ``FLUSHDB`` before each child.
- PostgreSQL: a database of its own, ``offload_bench``, dropped and created
  again before each child (the server's ``test`` database is only used to
  connect while doing that).

``prepare`` sets the environment the driver modules and their worker
processes read, so every process of a measurement points at the same store.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

Backend = Literal["sqlite", "redis", "postgres"]
BACKENDS: tuple[Backend, ...] = ("sqlite", "redis", "postgres")
LABELS: dict[str, str] = {"sqlite": "SQLite", "redis": "Redis", "postgres": "PostgreSQL"}

# Two runs at once on one machine must not share a store (each empties it
# before every measurement): give the second its own with BENCH_REDIS_URL
# (another database number) and BENCH_PG_DATABASE.
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/15")
PG_ADMIN_URL = os.environ.get("BENCH_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/test")
PG_DATABASE = os.environ.get("BENCH_PG_DATABASE", "offload_bench")
PG_URL = PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + PG_DATABASE
SQLITE_DIR_ENV = "BENCH_SQLITE_DIR"


def prepare(backend: Backend, workdir: Path) -> None:
    """Empty ``backend``'s store and point this process (and its workers) at it."""
    os.environ["BENCH_BACKEND"] = backend
    os.environ[SQLITE_DIR_ENV] = str(workdir)
    os.environ["BENCH_REDIS_URL"] = REDIS_URL
    os.environ["BENCH_PG_URL"] = PG_URL
    if backend == "redis":
        flush_redis()
    elif backend == "postgres":
        recreate_pg_database()


def empty(backend: Backend) -> None:
    """Leave ``backend``'s store empty: after a million tasks, not until the next run.

    SQLite's file goes with the measurement's temporary directory.
    """
    if backend == "redis":
        flush_redis()
    elif backend == "postgres":
        drop_pg_database()


def sqlite_path(name: str) -> str:
    """A database file in this measurement's temporary directory."""
    return str(Path(os.environ[SQLITE_DIR_ENV]) / name)


def flush_redis() -> None:
    """Empty the benchmark's own Redis database (never another one)."""
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.flushdb()
    finally:
        client.close()


def recreate_pg_database() -> None:
    """Drop the benchmark's database (ending its sessions) and create it empty."""
    import psycopg

    drop_pg_database()
    with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=10) as conn:
        conn.execute(f"CREATE DATABASE {PG_DATABASE}")


def drop_pg_database() -> None:
    """Drop the benchmark's database, ending its sessions, if it exists."""
    import psycopg

    with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=10) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {PG_DATABASE} WITH (FORCE)")
