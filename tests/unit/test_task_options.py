"""Task options are declared once (``offload._task.TaskOptions``); everything else follows.

What must not drift from the declaration: ``TASK_OPTIONS`` (the defaults
``declare`` checks against), ``make_spec``, the typed overloads of
``offload.task`` and ``App.task`` (what type checkers see), their docstrings
(what ``help()`` shows) and the README's table (what users read).
"""

from __future__ import annotations

import inspect
import re
import sys
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import offload
from offload._task import (
    OPTIONS,
    TASK_OPTIONS,
    TaskDecorator,
    TaskOptions,
    Unpack,
    make_spec,
)

README = Path(__file__).resolve().parents[2] / "README.md"
TABLE_MARK = "<!-- tests/unit/test_task_options.py holds this table"
DECLARED = list(typing.get_type_hints(TaskOptions))

# offload.task's and App.task's overloads, found by typing.get_overloads (3.11+).
DECORATORS: list[tuple[str, Callable[..., Any]]] = [
    ("offload.task", offload.task),
    ("App.task", offload.App.task),
]


def test_every_option_is_declared_with_a_default_and_a_line_of_documentation() -> None:
    assert DECLARED, "TaskOptions declares no option"
    assert list(OPTIONS) == DECLARED
    assert all(option.doc.strip() for option in OPTIONS.values())
    # Every option may be left out: a declaration names only what it changes.
    assert not TaskOptions.__required_keys__


def test_the_defaults_are_the_declared_ones_in_the_declared_order() -> None:
    assert list(TASK_OPTIONS) == DECLARED
    assert {name: option.default for name, option in OPTIONS.items()} == TASK_OPTIONS


def test_make_spec_takes_the_declared_options_and_nothing_else() -> None:
    parameters = list(inspect.signature(make_spec).parameters.values())
    assert [(p.name, p.kind) for p in parameters] == [
        ("fn", inspect.Parameter.POSITIONAL_OR_KEYWORD),
        ("options", inspect.Parameter.VAR_KEYWORD),
    ]
    assert typing.get_type_hints(make_spec)["options"] == Unpack[TaskOptions]


def test_passing_every_default_declares_the_same_task_as_passing_none() -> None:
    def work(x: int) -> int:
        return x

    assert make_spec(work, **TASK_OPTIONS) == make_spec(work)


@pytest.mark.parametrize(("where", "decorator"), DECORATORS, ids=[d[0] for d in DECORATORS])
def test_an_unknown_option_is_refused_naming_every_option(
    where: str, decorator: Callable[..., Any]
) -> None:
    app = offload.App()
    try:
        declare = decorator if where == "offload.task" else app.task
        with pytest.raises(offload.ConfigurationError, match="retrys") as info:
            declare(retrys=3)
    finally:
        app.shutdown(wait=False)
    assert ", ".join(DECLARED) in str(info.value)


@pytest.mark.skipif(sys.version_info < (3, 11), reason="typing.get_overloads is new in 3.11")
@pytest.mark.parametrize(("where", "decorator"), DECORATORS, ids=[d[0] for d in DECORATORS])
def test_the_typed_overloads_take_the_declaration(
    where: str, decorator: Callable[..., Any]
) -> None:
    overloads = typing.get_overloads(decorator)
    assert len(overloads) == 3, f"{where}: the overloads are not where this test looks"
    with_options = []
    for stub in overloads:
        parameters = [p for p in inspect.signature(stub).parameters.values() if p.name != "self"]
        if [p.name for p in parameters] == ["fn"]:
            continue  # @task on a function (coroutine or not): no options
        with_options.append(stub)
        # Only the declaration: one typed **options, no keyword spelled out by hand.
        assert [(p.name, p.kind) for p in parameters] == [
            ("options", inspect.Parameter.VAR_KEYWORD)
        ], where
        hints = typing.get_type_hints(stub)
        assert hints["options"] == Unpack[TaskOptions], where
        assert hints["return"] is TaskDecorator, where
    assert len(with_options) == 1, f"{where}: one overload takes the options"


@pytest.mark.parametrize(("where", "decorator"), DECORATORS, ids=[d[0] for d in DECORATORS])
def test_the_docstrings_list_every_option_with_its_default(
    where: str, decorator: Callable[..., Any]
) -> None:
    documented = re.findall(r"^- ``(\w+)=([^`]*)``: ", decorator.__doc__ or "", re.MULTILINE)
    assert documented == [(name, option.shown) for name, option in OPTIONS.items()], where


def readme_table() -> list[tuple[str, str]]:
    """The (option, default) rows of the README's table of task options."""
    lines = README.read_text(encoding="utf-8").splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith(TABLE_MARK)]
    assert len(starts) == 1, f"README.md has {len(starts)} tables marked {TABLE_MARK!r}"
    rows = []
    for line in lines[starts[0] + 3 :]:  # past the mark, the header and its rule
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        rows.append((cells[0].strip("`"), cells[1].strip("`")))
    return rows


def test_the_readme_table_lists_every_option_with_its_default() -> None:
    assert readme_table() == [(name, option.shown) for name, option in OPTIONS.items()]
