"""What Huey on SQLite and Huey on Redis share: the driver and the consumer command.

Huey has no batch enqueue (``task.map`` calls ``enqueue`` once per item),
so it has no batch figure. Workers: ``huey_consumer MODULE.huey --workers N
--worker-type process --quiet``: one consumer whose N worker processes run
tasks; the consumer's own process (it runs the scheduler and supervises)
is a helper on top, as Celery's parent is.
"""

from __future__ import annotations

from typing import Any

from huey import Huey
from huey.api import TaskWrapper

from benchmarks.peers import base


class HueyDriver(base.Driver):
    huey: Huey
    task: TaskWrapper
    module: str

    def enqueue(self, i: int) -> Any:
        return self.task(i)

    def result(self, handle: Any, timeout: float) -> Any:
        return handle.get(blocking=True, timeout=timeout)

    def done_count(self) -> int:
        # noop returns its argument (not None), so Huey stores one result per task.
        return int(self.huey.result_count())

    def worker_commands(self, processes: int) -> list[list[str]]:
        return [
            [
                str(base.BIN / "huey_consumer"),
                f"{self.module}.huey",
                "--workers",
                str(processes),
                "--worker-type",
                "process",
                "--quiet",  # WARNING and above
            ]
        ]

    def close(self) -> None:
        self.huey.storage.close()
