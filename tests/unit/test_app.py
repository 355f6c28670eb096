"""``offload.App``: construction errors, life cycle, the context manager."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

import offload
from helpers import WAIT


@pytest.mark.parametrize("url", ["nonsense", "sqlite"])
def test_unsupported_urls_are_refused_with_the_supported_list(url: str) -> None:
    with pytest.raises(offload.ConfigurationError) as info:
        offload.App(url)
    assert url in str(info.value)
    assert "memory://" in str(info.value)


def test_on_exit_is_checked() -> None:
    with pytest.raises(offload.ConfigurationError, match="wait"):
        offload.App(on_exit="later")  # type: ignore[arg-type]


def test_an_app_starts_no_thread_until_first_used() -> None:
    before = {t.ident for t in threading.enumerate()}
    app = offload.App(name="lazy")
    app.task(abs)
    assert {t.ident for t in threading.enumerate()} == before
    app.shutdown()


def test_context_manager_waits_for_calls() -> None:
    release = threading.Event()
    with offload.App(name="ctx") as app:
        task = app.task(release.wait)
        handle = task(WAIT)
        threading.Timer(0.05, release.set).start()
    assert handle.done()
    assert handle.result() is True


def test_a_shut_down_app_refuses_calls_and_says_what_to_do() -> None:
    app = offload.App(name="closed")
    task = app.task(abs)
    assert task(-1).result(timeout=WAIT) == 1
    app.shutdown()
    with pytest.raises(offload.ConfigurationError, match="create a new App"):
        task(-2)


def test_join_and_pending(app: offload.App) -> None:
    release = threading.Event()
    task = app.task(release.wait)
    handles = [task(WAIT) for _ in range(3)]
    assert app.pending == 3
    assert app.join(timeout=0.01) is False
    release.set()
    assert app.join(timeout=WAIT) is True
    assert app.pending == 0
    assert all(h.result() for h in handles)


def test_tasks_of_two_apps_are_independent(make_app: Callable[..., offload.App]) -> None:
    one, two = make_app(name="one"), make_app(name="two")

    def where() -> str:
        return threading.current_thread().name

    assert one.task(where)().result(timeout=WAIT).startswith("one")
    assert two.task(where)().result(timeout=WAIT).startswith("two")


@pytest.mark.parametrize(("option", "size"), [("threads", 0), ("threads", -1), ("processes", -1)])
def test_pool_sizes_are_checked_when_the_app_is_made(option: str, size: object) -> None:
    # Not later in the worker's thread, where every call would wait forever.
    with pytest.raises(offload.ConfigurationError, match="positive integer"):
        offload.App(name="bad-size", **{option: size})  # type: ignore[arg-type]


def test_shutdown_returns_once_the_pool_threads_have_left() -> None:
    # As ThreadPoolExecutor.shutdown(wait=True): nothing of the app runs after.
    app = offload.App(name="joined", threads=4)
    barrier = threading.Barrier(4, timeout=WAIT)
    handles = [app.task(name="meet")(barrier.wait)() for _ in range(4)]
    assert all(h.exception(WAIT) is None for h in handles)
    app.shutdown()
    assert [t.name for t in threading.enumerate() if t.name.startswith("joined")] == []


def test_a_shut_down_app_can_be_garbage_collected() -> None:
    import gc
    import weakref

    refs = []
    for _ in range(3):
        app = offload.App(name="collectable")
        app.task(abs)(-1).result(timeout=5)
        app.shutdown()
        refs.append(weakref.ref(app))
        del app
    gc.collect()
    alive = sum(ref() is not None for ref in refs)
    assert alive <= 1, f"{alive} of 3 shut-down apps are still referenced"
