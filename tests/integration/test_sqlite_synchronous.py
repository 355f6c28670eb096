"""``?synchronous=full``: a SQLite broker that syncs every commit, for power-cut safety."""

from __future__ import annotations

from pathlib import Path

import pytest

import offload


def seven() -> int:
    return 7


def _synchronous(app: offload.App) -> int:
    database = app.broker._database  # type: ignore[attr-defined]
    with database.lock:
        return int(database.connection.execute("PRAGMA synchronous").fetchone()[0])


@pytest.mark.parametrize(
    ("query", "level"), [("", 1), ("?synchronous=normal", 1), ("?synchronous=FULL", 2)]
)
def test_the_url_chooses_how_often_sqlite_syncs(tmp_path: Path, query: str, level: int) -> None:
    app = offload.App(f"sqlite:///{tmp_path / 'jobs.db'}{query}", embedded_worker=True)
    try:
        assert _synchronous(app) == level  # SQLite's numbers: NORMAL 1, FULL 2
        assert app.task(seven)().result(timeout=30) == 7
    finally:
        app.shutdown()


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("?synchronous=off", "choose normal"),
        ("?synchronous=", "choose normal"),
        ("?journal=wal", "unknown SQLite option 'journal'"),
    ],
)
def test_other_values_and_options_are_refused_with_what_to_write(
    tmp_path: Path, query: str, message: str
) -> None:
    with pytest.raises(offload.ConfigurationError, match=message):
        offload.App(f"sqlite:///{tmp_path / 'jobs.db'}{query}")
