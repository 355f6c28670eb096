"""``offload worker --log-format json``: one JSON object per line, with the job's fields."""

from __future__ import annotations

import json
import logging
import sys

from offload._logformat import JsonFormatter


def _record(**extra: object) -> logging.LogRecord:
    record = logging.LogRecord("offload._joblog", logging.INFO, __file__, 1, "job %s", ("x",), None)
    record.__dict__.update(extra)
    return record


def test_a_job_record_becomes_one_line_of_json_with_its_fields() -> None:
    line = JsonFormatter().format(
        _record(job_id="j1", task="t", queue="q", attempt=2, state="succeeded", duration=0.25)
    )
    assert "\n" not in line
    data = json.loads(line)
    assert data["message"] == "job x" and data["level"] == "INFO"
    assert data["logger"] == "offload._joblog"
    assert {k: data[k] for k in ("job_id", "task", "queue", "attempt", "state", "duration")} == {
        "job_id": "j1",
        "task": "t",
        "queue": "q",
        "attempt": 2,
        "state": "succeeded",
        "duration": 0.25,
    }
    assert "traceback" not in data


def test_a_traceback_stays_on_the_one_line() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = _record(job_id="j2", state="failed")
        record.exc_info = sys.exc_info()
    line = JsonFormatter().format(record)
    assert "\n" not in line
    data = json.loads(line)
    assert "ValueError: boom" in data["traceback"]
    assert data["state"] == "failed"


def test_a_record_about_no_job_has_no_job_fields() -> None:
    data = json.loads(JsonFormatter().format(_record()))
    assert "job_id" not in data and "state" not in data
