"""Scripts shipped beside a broker's code: Lua and SQL as files, not Python strings.

A file is read once, from the installed package (``importlib.resources``),
so the wheel carries them and an editor or linter sees them as what they
are. Two shapes:

- ``named_queries``: one ``.sql`` file holding many statements, each under
  a ``-- name: <name>`` line (the convention of yesql and aiosql);
- ``numbered``: a folder of migrations, ``001_first.sql``, ``002_next.sql``,
  applied in order of their number.
"""

from __future__ import annotations

import functools
import re
from importlib import resources

_NAME = re.compile(r"^--\s*name:\s*([a-z_][a-z0-9_]*)\s*$", re.MULTILINE)
_NUMBERED = re.compile(r"^(\d{3})_[a-z0-9_]+\.sql$")


@functools.cache
def read_text(package: str, path: str) -> str:
    """The text of ``path`` (``/``-separated) inside ``package``."""
    target = resources.files(package)
    for part in path.split("/"):
        target = target.joinpath(part)
    return target.read_text(encoding="utf-8")


@functools.cache
def named_queries(package: str, path: str) -> dict[str, str]:
    """The statements of one ``.sql`` file, by the name on the ``-- name:`` line before each."""
    text = read_text(package, path)
    parts = _NAME.split(text)
    # parts: [preamble, name1, body1, name2, body2, ...]
    queries: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        if name in queries:
            raise ValueError(f"{package}/{path}: the query name {name!r} appears twice")
        queries[name] = body.strip()
    return queries


def numbered(package: str, folder: str) -> list[tuple[int, str]]:
    """The ``NNN_name.sql`` files of ``folder``, as (number, text), in order.

    Numbers must run 1, 2, 3... without a gap: a missing migration is a
    packaging mistake, better caught here than half-applied.
    """
    found: list[tuple[int, str]] = []
    for entry in resources.files(package).joinpath(folder).iterdir():
        match = _NUMBERED.match(entry.name)
        if match:
            found.append((int(match.group(1)), entry.read_text(encoding="utf-8")))
    found.sort()
    expected = list(range(1, len(found) + 1))
    if [number for number, _ in found] != expected:
        raise ValueError(f"{package}/{folder}: migrations must be numbered 001, 002, ... in order")
    return found
