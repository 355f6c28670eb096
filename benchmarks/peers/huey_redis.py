"""Huey's ``RedisHuey`` on database 15; the consumer waits with BRPOP (its default).

``notify_result=True`` is Huey's option for waiting on a result with BLPOP
rather than by polling: it is turned on for the round trip only
(``BENCH_ROUNDTRIP=1``), where it is what a user who waits would choose.
"""

from __future__ import annotations

import os

from huey import RedisHuey

from benchmarks.peers import base
from benchmarks.peers.huey_common import HueyDriver

huey = RedisHuey(
    "bench",
    url=os.environ["BENCH_REDIS_URL"],
    notify_result=os.environ.get("BENCH_ROUNDTRIP") == "1",
)
noop = huey.task(name="noop")(base.noop)


class Driver(HueyDriver):
    system = "Huey"

    def __init__(self) -> None:
        self.huey, self.task, self.module = huey, noop, __name__
