"""Checked by mypy --strict in CI, never run: proves what type checkers see.

Each ``# type: ignore[code]`` below marks a line that MUST be an error; with
``warn_unused_ignores`` mypy fails if it ever stops being one.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from typing_extensions import assert_type

import offload
from offload import Handle


@offload.task
def work(x: int) -> int:
    return x * 2


@offload.task(pool="process", retries=3, timeout=10)
def crunch(n: int, *, scale: float = 1.0) -> float:
    return n * scale


@offload.task
async def fetch(url: str) -> bytes:
    return url.encode()


app = offload.App()


@app.task(queue="mail")
def send_email(to: str) -> str:
    return to


assert_type(work(3), Handle[int])
assert_type(work(3).result(timeout=1), int)
assert_type(work.delay(3), Handle[int])
assert_type(work.options(delay=5, priority=1)(3), Handle[int])
assert_type(work.map([1, 2, 3]), list[Handle[int]])
assert_type(crunch(2, scale=0.5), Handle[float])
assert_type(fetch("https://example.org"), Handle[bytes])
assert_type(send_email("a@example.com"), Handle[str])


async def awaiting() -> None:
    assert_type(await work(3), int)
    assert_type(await fetch("x"), bytes)


# Wrong arguments are errors: the ParamSpec carries the signature.
work("three")  # type: ignore[arg-type]
work(3, 4)  # type: ignore[call-arg]
work.delay("three")  # type: ignore[arg-type]
work.options(timeout=1)("three")  # type: ignore[arg-type]
crunch(2, scale="big")  # type: ignore[arg-type]
send_email(42)  # type: ignore[arg-type]
wrong: Handle[str] = work(3)  # type: ignore[assignment]

# functools.wraps'd attributes are visible to type checkers too.
assert_type(work.__name__, str)
assert_type(work.__wrapped__, Callable[..., Any])

# The background drop-in: module attribute assignment type-checks.
import offload.background as bg  # noqa: E402

bg.n = 110
bg.n = "many"  # type: ignore[assignment]


# Task options are typed keywords (offload._task.TaskOptions): a wrong type or
# an unknown option is an error, on offload.task and App.task alike.
offload.task(retries="3")  # type: ignore[call-overload]
offload.task(bogus=1)  # type: ignore[call-overload]
app.task(timeout="soon")  # type: ignore[call-overload]
app.task(bogus=1)  # type: ignore[call-overload]


@app.task(timeout=timedelta(seconds=5), retry_on=(ValueError,), backoff=offload.Backoff())
def well_declared(x: int) -> int:
    return x


assert_type(well_declared(1), Handle[int])


# -- app.periodic keeps the task's types ------------------------------------------------

scheduled_app = offload.App("sqlite:///typing.db")


@scheduled_app.periodic(cron="*/5 * * * *", tz="Europe/Paris", retries=2)
def tick(label: str) -> int:
    return len(label)


assert_type(tick("a"), Handle[int])
tick(3)  # type: ignore[arg-type]
assert_type(scheduled_app.periodic(every=timedelta(seconds=30))(work)(2), Handle[int])
scheduled_app.periodic(every=5, missed=offload.Missed.ALL, max_catch_up=3)
scheduled_app.periodic(every=5, missed="sometimes")  # type: ignore[arg-type]
scheduled_app.periodic(every=5, cron_expression="* * * * *")  # type: ignore[call-arg]


# -- await task.aio(...) ----------------------------------------------------------------


async def _aio_calls() -> None:
    assert_type(await work.aio(3), Handle[int])
    assert_type(await work.options(priority=2).aio(3), Handle[int])
    assert_type(await (await fetch.aio("https://example.org")), bytes)
    await work.aio("three")  # type: ignore[arg-type]


# -- workflows are typed by their final step ----------------------------------------------


def workflows_are_typed_by_their_final_step() -> None:
    signature = work.s(1)
    assert_type(signature, offload.Signature[int])
    assert_type(send_email.options(priority=1).s("a"), offload.Signature[str])
    assert_type(offload.chain(work.s(1), send_email.s()).delay(), offload.WorkflowHandle[str])
    assert_type(
        offload.group(work.s(i) for i in range(3)).delay(), offload.WorkflowHandle[list[int]]
    )
    assert_type(offload.chord([work.s(1)], send_email.s()).delay(), offload.WorkflowHandle[str])
    handle: Handle[str] = offload.chain(work.s(1), send_email.s())()
    assert_type(send_email.options(depends_on=[handle])("b"), Handle[str])
    offload.chain(work)  # type: ignore[call-overload]
