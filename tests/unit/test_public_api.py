"""The public face: ``__all__`` as documented, private implementation, a quiet import."""

from __future__ import annotations

import inspect
import pkgutil
import subprocess
import sys

import offload
import offload.background

DOCUMENTED = {
    "App",
    "Backoff",
    "BrokerUnavailable",
    "Cancelled",
    "ConfigurationError",
    "Handle",
    "NotSerializable",
    "OffloadError",
    "PayloadRejected",
    "PayloadTooLarge",
    "RateLimit",
    "RemoteTraceback",
    "ResultTimeout",
    "Retry",
    "Schedule",
    "Missed",
    "State",
    "Task",
    "TaskCall",
    "TaskCancelled",
    "MessageRejected",
    "Message",
    "Middleware",
    "Delay",
    "JobContext",
    "NoCurrentJob",
    "Outcome",
    "Progress",
    "current",
    "step",
    "TaskFailed",
    "TaskNotAllowed",
    "TaskNotFound",
    "TaskNotImportable",
    "TaskTimeout",
    "WorkerLost",
    "__version__",
    "as_completed",
    "default_app",
    "gather",
    "shutdown",
    "task",
    "wait",
    "Signature",
    "Workflow",
    "WorkflowHandle",
    "chain",
    "chord",
    "group",
}

PUBLIC_MODULES = {
    "background",
    "cli",
    "testing",
    "__main__",
    "dashboard",  # the optional faces and adapters: offload.dashboard, offload.contrib.*
    "contrib",
    "contrib.metrics",
    "contrib.otel",
}


def test_all_is_the_documented_set() -> None:
    assert set(offload.__all__) == DOCUMENTED
    assert len(offload.__all__) == len(set(offload.__all__)), "a name is listed twice"


def test_every_public_name_exists_and_has_a_docstring() -> None:
    for name in offload.__all__:
        assert hasattr(offload, name), f"offload.{name} is in __all__ but missing"
        value = getattr(offload, name)
        if name == "__version__":
            assert isinstance(value, str)
            assert value.count(".") >= 1
            continue
        doc = inspect.getdoc(value)
        assert doc, f"offload.{name} has no docstring"
        # Not a docstring inherited from a builtin base (object, Exception, ...).
        own = value.__doc__ if isinstance(value, type) else doc
        assert own, f"offload.{name} has no docstring of its own"


def test_star_import_gives_exactly_all() -> None:
    namespace: dict[str, object] = {}
    exec("from offload import *", namespace)
    namespace.pop("__builtins__", None)
    assert set(namespace) == set(offload.__all__)


def test_errors_share_one_root() -> None:
    for name in offload.__all__:
        value = getattr(offload, name)
        if isinstance(value, type) and issubclass(value, Exception):
            if value is offload.RemoteTraceback:
                continue  # carries a child's traceback text; never raised alone
            if value is offload.Delay:
                continue  # an instruction users raise (wait, no attempt counted), not an error
            assert issubclass(value, offload.OffloadError), name


def test_background_exposes_the_background_names() -> None:
    bg = offload.background
    for name in ("task", "callback", "run", "n", "default_n"):
        assert hasattr(bg, name), f"offload.background.{name} is missing"
    assert callable(bg.task)
    assert callable(bg.callback)
    assert callable(bg.run)
    assert callable(bg.default_n)
    assert isinstance(bg.n, int)
    assert set(bg.__all__) == {"task", "callback", "run", "n", "default_n"}


def test_implementation_modules_are_private() -> None:
    names = [info.name for info in pkgutil.walk_packages(offload.__path__, onerror=print)]
    assert names, "no modules found in the offload package"
    public = set()
    for name in names:
        parts = name.split(".")
        if name in PUBLIC_MODULES:
            continue
        inside = max(
            (i for i in range(1, len(parts)) if ".".join(parts[:i]) in PUBLIC_MODULES), default=0
        )
        if any(not part.startswith("_") for part in parts[inside:]):
            public.add(name)
    assert not public, f"modules without a leading underscore: {sorted(public)}"


QUIET_IMPORT = """
import asyncio, sys, threading
before = threading.active_count()
import offload
after = threading.active_count()
policy = asyncio.get_event_loop_policy()
# No public way to ask "is a loop set?" without creating one; peek at the policy.
local = getattr(policy, "_local", None)
loop = getattr(local, "_loop", None)
print(before, after, loop is None, asyncio._get_running_loop() is None)
print(sorted(t.name for t in threading.enumerate()))
"""


def test_import_creates_no_threads_and_no_event_loop() -> None:
    out = subprocess.run(
        [sys.executable, "-c", QUIET_IMPORT],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout.splitlines()
    before, after, no_loop, not_running = out[0].split()
    assert (before, after) == ("1", "1"), f"threads after `import offload`: {out[1]}"
    assert no_loop == "True", "`import offload` set an event loop"
    assert not_running == "True"


def test_import_does_not_load_the_cli_or_progress_bar_dependencies() -> None:
    code = "import sys, offload; print('click' in sys.modules, 'tqdm' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True
    ).stdout.split()
    assert out == ["False", "False"], "import offload should stay light (click, tqdm lazily)"
