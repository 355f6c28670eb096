"""Every log record about a job carries its fields, under the ``offload`` logger tree."""

from __future__ import annotations

import logging

import pytest

import offload


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
