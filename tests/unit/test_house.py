"""The house limits of STYLE.md, held by a test: small modules, classes and functions.

- no module of ``src/offload`` over 600 lines,
- no class over 25 methods (every ``def``/``async def`` directly in its body),
- no function over 50 lines (from its ``def`` line to its last line).

Read from the source with ``ast``, never imported: a module that does not
import (a missing extra) is measured all the same. ``python
tests/unit/test_house.py`` prints the largest of each kind, whether or not
they are over the limit: the figures a release note quotes.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

SOURCE = Path(__file__).resolve().parents[2] / "src" / "offload"

MAX_MODULE_LINES = 600
MAX_CLASS_METHODS = 25
MAX_FUNCTION_LINES = 50


@dataclass(frozen=True)
class Size:
    """One measured piece of code: where it is, and how big."""

    where: str  # path:line, clickable in a terminal and an editor
    name: str
    size: int

    def __str__(self) -> str:
        place = "" if self.where == self.name else f"  ({self.where})"
        return f"{self.size:5d}  {self.name}{place}"


def _modules() -> list[Path]:
    return sorted(SOURCE.rglob("*.py"))


def _relative(path: Path) -> str:
    return str(path.relative_to(SOURCE.parents[1]))


def _parsed(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def module_sizes() -> list[Size]:
    """Every module's length in lines, largest first."""
    sizes = []
    for path in _modules():
        lines = len(path.read_text(encoding="utf-8").splitlines())
        sizes.append(Size(_relative(path), _relative(path), lines))
    return _largest_first(sizes)


def class_sizes() -> list[Size]:
    """Every class's method count, largest first.

    A method is any ``def`` or ``async def`` directly in the class body:
    properties, overload stubs and dunders count too, since each is one
    more thing a reader of the class has to hold in mind.
    """
    sizes = []
    for path in _modules():
        for node in ast.walk(_parsed(path)):
            if isinstance(node, ast.ClassDef):
                methods = sum(
                    isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
                    for child in node.body
                )
                where = f"{_relative(path)}:{node.lineno}"
                sizes.append(Size(where, node.name, methods))
    return _largest_first(sizes)


def function_sizes() -> list[Size]:
    """Every function's (and method's, nested ones included) length, largest first.

    Counted from the ``def`` line to the last line of the body, so
    decorators do not count and a docstring does.
    """
    sizes = []
    for path in _modules():
        tree = _parsed(path)
        owners = _qualified_names(tree)
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                end = node.end_lineno or node.lineno
                where = f"{_relative(path)}:{node.lineno}"
                sizes.append(Size(where, owners[node], end - node.lineno + 1))
    return _largest_first(sizes)


def _qualified_names(tree: ast.Module) -> dict[ast.AST, str]:
    """``Class.method`` and ``outer.<locals>.inner``, as Python's own ``__qualname__``."""
    names: dict[ast.AST, str] = {}

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                names[child] = prefix + child.name
                visit(child, f"{prefix}{child.name}.<locals>.")
            elif isinstance(child, ast.ClassDef):
                visit(child, f"{prefix}{child.name}.")
            else:
                visit(child, prefix)

    visit(tree, "")
    return names


def _largest_first(sizes: list[Size]) -> list[Size]:
    return sorted(sizes, key=lambda size: (-size.size, size.where))


def _report(kind: str, limit: int, over: list[Size]) -> str:
    listing = "\n".join(f"  {size}" for size in over)
    return f"{len(over)} {kind} over {limit} (split them; STYLE.md, 'Small pieces'):\n{listing}"


def test_no_module_is_over_600_lines() -> None:
    over = [size for size in module_sizes() if size.size > MAX_MODULE_LINES]
    assert not over, _report("module(s)", MAX_MODULE_LINES, over)


def test_no_class_has_over_25_methods() -> None:
    over = [size for size in class_sizes() if size.size > MAX_CLASS_METHODS]
    assert not over, _report("class(es)", MAX_CLASS_METHODS, over)


def test_no_function_is_over_50_lines() -> None:
    over = [size for size in function_sizes() if size.size > MAX_FUNCTION_LINES]
    assert not over, _report("function(s)", MAX_FUNCTION_LINES, over)


def test_the_measure_sees_the_package() -> None:
    # A wrong SOURCE path would make the three tests above pass on nothing.
    names = {size.name for size in module_sizes()}
    assert "src/offload/__init__.py" in names
    assert any(size.name == "App" for size in class_sizes())


def main(top: int = 5) -> None:
    """Print the ``top`` largest modules, classes and functions, marking those over."""
    for title, unit, limit, sizes in (
        ("modules", "lines", MAX_MODULE_LINES, module_sizes()),
        ("classes", "methods", MAX_CLASS_METHODS, class_sizes()),
        ("functions", "lines", MAX_FUNCTION_LINES, function_sizes()),
    ):
        over = sum(size.size > limit for size in sizes)
        print(f"largest {title} ({unit}; limit {limit}; {over} over):")
        for size in sizes[:top]:
            print(f"  {'!' if size.size > limit else ' '} {size}")
        print()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
