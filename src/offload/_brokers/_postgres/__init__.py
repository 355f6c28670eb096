"""The PostgreSQL broker: ``PostgresBroker``, its inspector, its connections, its SQL.

``broker`` claims and stores (and wakes workers), ``inspector`` reads and
manages jobs by id, ``link`` holds the connections, ``schema`` runs the
migrations of ``sql/migrations/``, ``queries`` fills in ``sql/queries.sql``.
Importing this package imports psycopg: ``offload._brokers._url`` does it
only for a ``postgresql://`` URL.
"""

from __future__ import annotations

from .broker import PostgresBroker
from .inspector import PostgresInspector

__all__ = ["PostgresBroker", "PostgresInspector"]
