"""Every log record about a job carries its fields, under the ``offload`` logger tree."""

from __future__ import annotations

import logging

import pytest

import offload
from helpers import wait_until


def test_retry_and_final_failure_records_carry_the_job_fields(
    app: offload.App, caplog: pytest.LogCaptureFixture
) -> None:
    @app.task(retries=1, backoff=offload.Backoff(base=0, jitter=False), queue="mail")
    def fails() -> None:
        raise ValueError("nope")

    with caplog.at_level(logging.WARNING, logger="offload"):
        handle = fails()
        with pytest.raises(ValueError):
            handle.result(timeout=10)
        job_id = handle.id
        del handle  # never retrieved again: nothing more is logged for it
        # The retry is logged once its nack is stored: the next attempt may end first.
        assert wait_until(lambda: any(getattr(r, "job_id", None) == job_id for r in caplog.records))
    records = [r for r in caplog.records if getattr(r, "job_id", None) == job_id]
    assert [r.levelname for r in records] == ["WARNING"]  # the retry; the failure was retrieved
    (retry,) = records
    assert retry.name.startswith("offload.")
    assert (retry.task, retry.attempt, retry.queue) == (fails.name, 1, "mail")  # type: ignore[attr-defined]


def test_an_unretrieved_failure_is_logged_with_the_job_fields(
    app: offload.App, caplog: pytest.LogCaptureFixture
) -> None:
    @app.task
    def fails() -> None:
        raise ValueError("nobody looks")

    with caplog.at_level(logging.ERROR, logger="offload"):
        handle = fails()
        offload.wait([handle], timeout=10)
        job_id = handle.id
        del handle
    (record,) = [r for r in caplog.records if getattr(r, "job_id", None) == job_id]
    assert record.task == fails.name  # type: ignore[attr-defined]
    assert record.exc_info is not None


def _job_records(caplog: pytest.LogCaptureFixture, job_id: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if getattr(r, "job_id", None) == job_id]


def test_a_finished_job_is_one_info_line_with_its_fields(
    app: offload.App, caplog: pytest.LogCaptureFixture
) -> None:
    @app.task(queue="mail")
    def works(x: int) -> int:
        return x + 1

    with caplog.at_level(logging.INFO, logger="offload"):
        handle = works(1)
        assert handle.result(timeout=10) == 2
        assert wait_until(lambda: bool(_job_records(caplog, handle.id)))
    (record,) = _job_records(caplog, handle.id)
    assert record.levelname == "INFO"
    fields = record.__dict__
    assert (fields["task"], fields["queue"], fields["attempt"]) == (works.name, "mail", 1)
    assert fields["state"] == "succeeded"
    assert isinstance(fields["duration"], float) and fields["duration"] >= 0
    assert works.name in record.getMessage() and "succeeded" in record.getMessage()


def test_a_retry_is_a_warning_with_the_traceback_and_the_end_one_line(
    app: offload.App, caplog: pytest.LogCaptureFixture
) -> None:
    @app.task(retries=1, backoff=offload.Backoff(base=0, jitter=False))
    def fails() -> None:
        raise ValueError("nope")

    with caplog.at_level(logging.INFO, logger="offload"):
        handle = fails()
        with pytest.raises(ValueError):
            handle.result(timeout=10)
        assert wait_until(lambda: len(_job_records(caplog, handle.id)) >= 2)
    retry, final = _job_records(caplog, handle.id)
    assert (retry.levelname, retry.state, retry.attempt) == ("WARNING", "retrying", 1)  # type: ignore[attr-defined]
    assert retry.exc_info is not None and retry.exc_info[0] is ValueError
    # In-process, the caller's handle raises the failure (and Handle logs it at
    # ERROR if nobody looks): the runner's line stays at INFO. A worker process
    # has no handle: there it is an ERROR with the traceback (tests/e2e).
    assert (final.levelname, final.state, final.attempt) == ("INFO", "failed", 2)  # type: ignore[attr-defined]


def test_nothing_is_logged_per_job_at_warning(
    app: offload.App, caplog: pytest.LogCaptureFixture
) -> None:
    @app.task
    def works() -> int:
        return 1

    with caplog.at_level(logging.WARNING, logger="offload"):
        handles = [works() for _ in range(20)]
        assert [h.result(timeout=10) for h in handles] == [1] * 20
    assert not [r for r in caplog.records if hasattr(r, "job_id")]
