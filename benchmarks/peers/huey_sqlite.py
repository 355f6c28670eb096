"""Huey's ``SqliteHuey`` (WAL, its defaults) in a file of the measurement's temp dir.

Its consumer polls the table (no wake-ups): at most 0.1 s after it last
found work, backing off to 10 s when idle (Huey's defaults). Its result
waits poll too, from 50 ms up.
"""

from __future__ import annotations

from huey import SqliteHuey

from benchmarks.peers import base, servers
from benchmarks.peers.huey_common import HueyDriver

huey = SqliteHuey("bench", filename=servers.sqlite_path("huey.db"))
noop = huey.task(name="noop")(base.noop)


class Driver(HueyDriver):
    system = "Huey"

    def __init__(self) -> None:
        self.huey, self.task, self.module = huey, noop, __name__
