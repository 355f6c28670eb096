"""A broker's contents are data, never code: real worker processes, every durable broker.

Messages naming functions the app never declared (``posix:system``,
``subprocess:check_output``, ``os:abort``, ``builtins:eval``, and a function
reached through a declared module's imports) are written straight into the
broker, as anyone who can write to a shared Redis or database could. Each
must be dead-lettered with a reason that says how to allow it; nothing may
run (no file appears), and the worker must live on and run good jobs.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from helpers import wait_until
from offload import State
from offload._message import Message, new_id

WAIT = 30.0


def forged(app: Any, task: str, args: list[Any]) -> str:
    """A message as an attacker would store it: a JSON payload, any task name."""
    payload = json.dumps([args, {}]).encode()
    message = Message(new_id(), task, (), {}, payload=payload, created=time.time())
    app.broker.enqueue([message])
    return message.id


def test_a_message_naming_undeclared_code_runs_nothing(
    tasks: Any, start_worker: Callable[..., Any], tmp_path: Path
) -> None:
    worker = start_worker("--concurrency", "2")
    pwned = tmp_path / "pwned"
    evil = {
        forged(tasks.app, "posix:system", [f"touch {pwned}-system"]): "not include",
        forged(tasks.app, "subprocess:check_output", [["touch", f"{pwned}-check"]]): "include",
        forged(tasks.app, "os:abort", []): "include",
        forged(tasks.app, "builtins:eval", [f"open('{pwned}-eval', 'w')"]): "include",
        # A declared module's own imports are not its declarations.
        forged(tasks.app, "durable_tasks:os.system", [f"touch {pwned}-via"]): "not a function",
        forged(tasks.app, "durable_tasks:Point", [1, 2]): "not a function",
        forged(tasks.app, "durable_tasks.os.system", [f"touch {pwned}-dotted"]): "declared",
        forged(tasks.app, ":x", []): "not a module:function",
        forged(tasks.app, "..x", []): "declared",
    }
    good = tasks.add(20, 22)
    assert good.result(timeout=WAIT) == 42

    def all_dead() -> bool:
        jobs = [tasks.app.job(job_id) for job_id in evil]
        return all(job is not None and job.state is State.FAILED for job in jobs)

    wait_until(all_dead, timeout=WAIT)
    for job_id, reason in evil.items():
        job = tasks.app.job(job_id)
        assert job.error is not None
        assert job.error.type.startswith("offload._errors.TaskNot"), job.error
        assert reason in job.error.message, job.error.message
        assert job.attempt == 1, "dead-lettered at once, not redelivered"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("pwned")) == []
    assert worker.poll() is None, "the worker lives on"
    assert tasks.add(1, 1).result(timeout=WAIT) == 2


def test_a_payload_names_only_classes_of_declared_modules(
    tasks: Any, start_worker: Callable[..., Any]
) -> None:
    start_worker()
    tag = {"__offload__": "dataclass", "cls": "subprocess:CompletedProcess", "v": {}}
    message = Message(
        new_id(), "durable_tasks.swap", (), {}, payload=json.dumps([[tag], {}]).encode()
    )
    message.created = time.time()
    tasks.app.broker.enqueue([message])
    # A dataclass of the tasks' own module is fine.
    assert tasks.swap(tasks.Point(1, 2)).result(timeout=WAIT) == tasks.Point(2, 1)
    wait_until(lambda: tasks.app.job(message.id).state is State.FAILED, timeout=WAIT)
    error = tasks.app.job(message.id).error
    assert "subprocess" in error.message and "include" in error.message, error.message
