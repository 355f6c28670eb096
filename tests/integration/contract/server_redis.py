"""The Redis broker in the contract suite: a namespace of its own per broker, deleted on close.

``OFFLOAD_TEST_REDIS_URL`` names the server (``redis://127.0.0.1:6379/0``
by default). When it cannot be reached the tests skip, saying why; under
``CI`` they fail instead.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from servers import require_redis


def redis_broker(clock: Any, path: Path, **options: Any) -> Any:
    url = require_redis()
    from offload._brokers._redis import RedisBroker

    class DisposableRedisBroker(RedisBroker):
        """Deletes its namespace's keys when closed: tests leave nothing behind."""

        def close(self) -> None:
            try:
                self.drop()
            finally:
                super().close()

    namespace = f"test-{uuid.uuid4().hex}"
    return DisposableRedisBroker.from_url(url, clock=clock, namespace=namespace, **options)


FACTORIES = {"redis": redis_broker}
