"""``offload.step``: a step that finished returns its result when the job runs again."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import offload


@pytest.fixture
def app() -> Iterator[offload.App]:
    app = offload.App(threads=2)
    yield app
    app.shutdown(wait=False, cancel_pending=True)


def test_a_retry_resumes_after_the_steps_that_finished(app: offload.App) -> None:
    ran: list[str] = []

    def charge(amount: int) -> str:
        ran.append(f"charge {amount}")
        return f"receipt-{amount}"

    @app.task(retries=2, backoff=offload.Backoff(base=0, jitter=False))
    def checkout(amount: int) -> str:
        receipt = offload.step("charge", charge, amount)
        attempt = offload.current().attempt
        ran.append(f"attempt {attempt}")
        if attempt < 3:
            raise ConnectionError("the mail server is down")
        return receipt

    assert checkout(40).result(timeout=10) == "receipt-40"
    assert ran == ["charge 40", "attempt 1", "attempt 2", "attempt 3"], "charged once"


def test_a_step_that_raises_records_nothing_and_runs_again(app: offload.App) -> None:
    tries: list[int] = []

    def flaky() -> int:
        tries.append(1)
        if len(tries) == 1:
            raise ConnectionError("first time")
        return len(tries)

    @app.task(retries=1, backoff=offload.Backoff(base=0, jitter=False))
    def job() -> int:
        return offload.step("flaky", flaky)

    assert job().result(timeout=10) == 2
    assert len(tries) == 2


def test_steps_are_per_job_and_forgotten_when_it_ends(app: offload.App) -> None:
    @app.task
    def numbered(n: int) -> int:
        return offload.step("same name", lambda: n)

    assert [numbered(n).result(timeout=10) for n in range(3)] == [0, 1, 2]
    runner = app._runner
    assert runner.services.in_memory == {}, "nothing kept once the jobs ended"


@pytest.mark.parametrize("name", ["", "x" * 201, "nul\x00byte", 7])
def test_a_bad_step_name_is_refused_saying_what_it_takes(app: offload.App, name: object) -> None:
    @app.task
    def job() -> None:
        offload.step(name, print)  # type: ignore[arg-type]

    with pytest.raises(ValueError, match=r"offload\.step\(name"):
        job().result(timeout=10)


def test_step_outside_a_task_says_so() -> None:
    with pytest.raises(offload.NoCurrentJob):
        offload.step("x", print)
