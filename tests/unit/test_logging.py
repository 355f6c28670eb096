"""Logging follows STYLE.md: one logger per module, all under ``offload``, no handlers of ours.

A user (or a test's ``caplog``) tunes all of offload with the ``offload``
logger, or one part with its module's (``offload._handle``), because every
module logs to ``logging.getLogger(__name__)``.
"""

from __future__ import annotations

import ast
import logging
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parents[2] / "src" / "offload"

# The command line is a program, not a library: it may configure logging
# (and so may Django's `manage.py offload_worker`, when the project's LOGGING did not).
PROGRAMS = {
    "cli.py",
    "_commands_schedules.py",  # offload scheduler
    "_logformat.py",  # --log-format json
    "contrib/django/management/commands/offload_worker.py",
}


def _calls(attribute: str) -> list[tuple[str, ast.Call]]:
    found = []
    for path in sorted(SOURCE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == attribute
            ):
                found.append((f"{path.relative_to(SOURCE)}:{node.lineno}", node))
    return found


def test_every_logger_is_named_after_its_module() -> None:
    loggers = _calls("getLogger")
    assert loggers, "no logger found: is SOURCE right?"
    wrong = [
        where
        for where, call in loggers
        if not (
            len(call.args) == 1
            and isinstance(call.args[0], ast.Name)
            and call.args[0].id == "__name__"
        )
    ]
    assert not wrong, f"use logging.getLogger(__name__): {wrong}"


@pytest.mark.parametrize("call", ["addHandler", "basicConfig", "setLevel"])
def test_the_library_leaves_handlers_and_levels_to_the_application(call: str) -> None:
    found = [where for where, _ in _calls(call) if where.split(":")[0] not in PROGRAMS]
    assert not found, f"{call}() in library code: {found}"


def test_the_offload_logger_sees_every_module(caplog: pytest.LogCaptureFixture) -> None:
    # What tests (and users) rely on: a level set on "offload" reaches its children.
    caplog.set_level(logging.WARNING, logger="offload")
    logging.getLogger("offload._handle").warning("from a module")
    logging.getLogger("offload._handle").info("below the level")
    assert [(r.name, r.getMessage()) for r in caplog.records] == [
        ("offload._handle", "from a module")
    ]
