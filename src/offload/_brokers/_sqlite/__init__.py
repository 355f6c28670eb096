"""The SQLite broker: claim path (``broker``), inspection (``inspector``), schema (``schema``).

Its SQL lives beside the code, in ``sql/``: the migrations, numbered, and
every other statement by name in ``queries.sql``.
"""

from .broker import SqliteBroker
from .inspector import SqliteInspector

__all__ = ["SqliteBroker", "SqliteInspector"]
