"""offload in a FastAPI app: one endpoint enqueues and returns the job id, one awaits the result.

Run it (from the repository's root, with ``pip install -e ".[examples,redis]"``)::

    export OFFLOAD_URL=redis://127.0.0.1:6379/0       # or sqlite:///jobs.db, postgresql://...
    uvicorn examples.fastapi_app:api                  # the web app
    offload worker examples.fastapi_app:jobs          # any number of workers, anywhere

    curl -X POST 'localhost:8000/words?text=to+be+or+not'   # {"id": "..."}
    curl 'localhost:8000/jobs/<id>?wait=10'                  # {"state": "succeeded", "result": 4}

``EXAMPLE_WORKER=1`` runs a worker inside the web process instead (one
process for development). Nothing here blocks the event loop: calls are
stored with ``await task.aio(...)`` and results read with ``await handle``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, HTTPException, Response

import offload

jobs = offload.App(os.environ.get("OFFLOAD_URL", "sqlite:///fastapi-jobs.db"), name="fastapi")


@jobs.task(retries=2, backoff=offload.Backoff(base=0.5, cap=5), retry_on=(OSError,), timeout=30)
def count_words(text: str) -> int:
    """The background work: here small, in a real app the slow part of a request."""
    if text == "fail":
        raise ValueError("asked to fail")
    return len(text.split())


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    """Start offload with the app and stop it with the app.

    Reaching the broker at startup (and, on PostgreSQL, bringing its schema
    up to date) makes a wrong ``OFFLOAD_URL`` fail the deployment, not the
    first request. At shutdown the app's connections close; jobs already
    stored stay in the broker for the workers.
    """
    await asyncio.to_thread(jobs.inspector.counts)
    worker = jobs.worker() if os.environ.get("EXAMPLE_WORKER") == "1" else None
    if worker is not None:
        worker.start()
    try:
        yield
    finally:
        if worker is not None:
            await asyncio.to_thread(worker.stop)
        await asyncio.to_thread(jobs.shutdown, False)


api = FastAPI(title="offload example", lifespan=lifespan)


@api.post("/words", status_code=202)
async def enqueue(text: str) -> dict[str, str]:
    """Store a call of ``count_words`` and answer at once with its job id."""
    handle = await count_words.aio(text)
    return {"id": handle.id}


@api.get("/jobs/{job_id}")
async def result(job_id: str, response: Response, wait: float = 0.0) -> dict[str, Any]:
    """The job's result, waiting up to ``wait`` seconds for it (202 while it is not done)."""
    if not 0 <= wait <= 60:
        raise HTTPException(422, "wait= is seconds, from 0 to 60")
    if await asyncio.to_thread(jobs.job, job_id) is None:
        raise HTTPException(404, f"no job {job_id}")
    handle = await asyncio.to_thread(jobs.handle, job_id)
    if wait and not handle.done():
        # asyncio.wait gives up waiting without cancelling what it waits for:
        # cancelling an await of the handle (as wait_for does on timeout)
        # would cancel the job itself.
        await asyncio.wait([asyncio.ensure_future(_settled(handle))], timeout=wait)
    if not handle.done() or handle.cancelled():
        response.status_code = 202 if not handle.done() else 200
        return {"id": job_id, "state": handle.state.value}
    error = handle.exception()
    if error is not None:
        return {"id": job_id, "state": "failed", "error": f"{type(error).__name__}: {error}"}
    return {"id": job_id, "state": "succeeded", "result": handle.result()}


async def _settled(handle: offload.Handle[Any]) -> None:
    with contextlib.suppress(Exception):  # the outcome is read from the handle
        await handle
