"""Fixtures shared by the in-process layer's tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

import offload
from offload.testing import FakeClock


@pytest.fixture
def app(request: pytest.FixtureRequest) -> Iterator[offload.App]:
    """A fresh in-process app, shut down (pending calls cancelled) after the test."""
    instance = offload.App(name=f"test-{request.node.name}"[:60])
    try:
        yield instance
    finally:
        instance.shutdown(wait=False, cancel_pending=True)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def fake_clock_app(clock: FakeClock) -> Iterator[offload.App]:
    """An app whose time only moves with ``clock.advance(...)`` (the ``clock`` fixture)."""
    instance = offload.App(clock=clock, name="test-fake-clock")
    try:
        yield instance
    finally:
        instance.shutdown(wait=False, cancel_pending=True)


@pytest.fixture
def make_app() -> Iterator[Callable[..., offload.App]]:
    """``make_app(threads=1, ...)``: apps with options, all shut down after the test."""
    made: list[offload.App] = []

    def make(**options: Any) -> offload.App:
        options.setdefault("name", "test-made")
        instance = offload.App(**options)
        made.append(instance)
        return instance

    yield make
    for instance in made:
        instance.shutdown(wait=False, cancel_pending=True)
