"""``await task.aio(...)`` in-process: the same call as ``task(...)``, from a coroutine."""

from __future__ import annotations

import asyncio

import pytest

import offload
from offload.testing import FakeClock, run_until_idle


def test_aio_returns_the_calls_handle(app: offload.App) -> None:
    square = app.task(lambda x: x * x)

    async def scenario() -> int:
        handle = await square.aio(7)
        assert isinstance(handle, offload.Handle)
        return await handle

    assert asyncio.run(scenario()) == 49


def test_aio_with_options_applies_them(fake_clock_app: offload.App, clock: FakeClock) -> None:
    identity = fake_clock_app.task(lambda x: x)

    async def scenario() -> offload.Handle[int]:
        return await identity.options(delay=60).aio(1)

    handle = asyncio.run(scenario())
    run_until_idle(fake_clock_app)
    assert handle.state is offload.State.QUEUED  # waits for its time, as delay= says
    clock.advance(61)
    run_until_idle(fake_clock_app)
    assert handle.result(timeout=10) == 1


def test_aio_refuses_what_a_call_refuses(app: offload.App) -> None:
    crunch = app.task(pool="process")(lambda x: x)

    async def scenario() -> None:
        await crunch.aio(1)

    with pytest.raises(offload.TaskNotImportable, match="lambda"):
        asyncio.run(scenario())
