"""App-level features of the server brokers: transactional enqueue, namespaces, migrate."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from click.testing import CliRunner

import offload
from offload import State
from offload.cli import main
from servers import drop_postgres_schema, require_postgres, require_redis


def double(x: int) -> int:
    return 2 * x


@pytest.fixture
def pg_app() -> Iterator[offload.App]:
    namespace = f"t_{uuid.uuid4().hex}"
    app = offload.App(f"{require_postgres()}?namespace={namespace}", name="pg-app")
    yield app
    app.shutdown(wait=False)
    drop_postgres_schema(f"offload_{namespace}")


def test_a_call_in_a_committed_transaction_is_stored(pg_app: offload.App) -> None:
    import psycopg

    task = pg_app.task(double)
    with psycopg.connect(require_postgres()) as connection:
        handle = task.options(connection=connection)(21)
        assert not handle.done()
        connection.commit()
    job = pg_app.job(handle.id)
    assert job is not None and job.state is State.QUEUED
    worker = pg_app.worker()
    worker.start()
    try:
        assert handle.result(timeout=20) == 42
    finally:
        worker.stop()


def test_a_call_in_a_rolled_back_transaction_never_existed(pg_app: offload.App) -> None:
    import psycopg

    task = pg_app.task(double)
    with psycopg.connect(require_postgres()) as connection:
        handle = task.options(connection=connection)(21)
        connection.rollback()
    assert pg_app.job(handle.id) is None
    with pytest.raises(offload.ResultTimeout):
        handle.result(timeout=0.3)  # not "not found": it may still be committed, for all we know


def test_connection_is_refused_by_brokers_without_transactions() -> None:
    app = offload.App()  # in-process: there is no database transaction to join
    try:
        with pytest.raises(offload.ConfigurationError, match=r"cannot\. Use a postgresql"):
            app.task(double).options(connection=object())(1)
    finally:
        app.shutdown(wait=False)


def test_a_namespace_in_the_url_separates_apps_on_one_server() -> None:
    base = require_redis()
    one, two = (f"{base}?namespace=t-{uuid.uuid4().hex}" for _ in range(2))
    first, second = offload.App(one), offload.App(two)
    try:
        handle = first.task(double)(1)
        assert first.job(handle.id) is not None
        assert second.job(handle.id) is None
        with pytest.raises(offload.ConfigurationError, match="choose one"):
            offload.App(one, namespace="other")
    finally:
        for app in (first, second):
            app.broker.drop()  # type: ignore[attr-defined]
            app.shutdown(wait=False)


def test_offload_migrate_brings_a_schema_up(monkeypatch: pytest.MonkeyPatch) -> None:
    namespace = f"t_{uuid.uuid4().hex}"
    monkeypatch.setenv("OFFLOAD_URL", f"{require_postgres()}?namespace={namespace}")
    try:
        result = CliRunner().invoke(main, ["migrate"])
        assert result.exit_code == 0, result.output
        assert "schema at version" in result.output
    finally:
        drop_postgres_schema(f"offload_{namespace}")


def test_passwords_never_reach_messages_or_reprs() -> None:
    app = offload.App("redis://:s3cret@127.0.0.1:6379/0?namespace=t-redact")
    try:
        assert "s3cret" not in repr(app)
    finally:
        app.shutdown(wait=False)
    with pytest.raises(offload.ConfigurationError) as caught:
        offload.App("postgresql://bob:s3cret@127.0.0.1:5432/test?bogus=1")
    assert "s3cret" not in str(caught.value)
    assert "bogus" in str(caught.value)
