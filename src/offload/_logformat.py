"""How ``offload worker`` prints its log: text lines, or one JSON object per line.

``--log-format json`` is for log collectors: every record is one object
with ``time``, ``level``, ``logger``, ``pid`` and ``message``, the job's
fields when it is about one (``job_id``, ``task``, ``queue``, ``attempt``,
``state``, ``duration``, ``retry_in``) and ``traceback`` when it carries one.
"""

from __future__ import annotations

import datetime
import json
import logging

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(process)d] %(message)s"
JOB_FIELDS = ("job_id", "task", "queue", "attempt", "state", "duration", "retry_in")


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (a traceback included, escaped)."""

    def format(self, record: logging.LogRecord) -> str:
        when = datetime.datetime.fromtimestamp(record.created, datetime.timezone.utc)
        data: dict[str, object] = {
            "time": when.isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "pid": record.process,
            "message": record.getMessage(),
        }
        for field in JOB_FIELDS:
            if field in record.__dict__:
                data[field] = record.__dict__[field]
        if record.exc_info:
            data["traceback"] = self.formatException(record.exc_info)
        elif record.exc_text:
            data["traceback"] = record.exc_text
        return json.dumps(data, default=str, ensure_ascii=False)


def configure(level: str, log_format: str) -> None:
    """Set up the root logger of a worker process: ``log_format`` is ``text`` or ``json``."""
    handler = logging.StreamHandler()
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=level.upper(), handlers=[handler])
