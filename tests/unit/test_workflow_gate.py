"""The workflow gate against a stub inspector: what a durable worker decides for a step."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

import offload
from offload._context import JobContext, fed
from offload._message import ErrorInfo, JobInfo, State
from offload._middleware import Skip
from offload._serializers import JsonSerializer
from offload._workflow_gate import Gate
from offload.testing import FakeClock

JSON = JsonSerializer()


class StubInspector:
    """Jobs by id (state, result); what was retried; optionally unreachable."""

    def __init__(self, jobs: dict[str, JobInfo], down: bool = False) -> None:
        self.jobs = jobs
        self.down = down
        self.retried: list[str] = []

    def job_states(self, job_ids: Sequence[str]) -> dict[str, State]:
        if self.down:
            raise offload.BrokerUnavailable("the broker is down")
        return {job_id: self.jobs[job_id].state for job_id in job_ids if job_id in self.jobs}

    def job(self, job_id: str) -> JobInfo | None:
        return self.jobs.get(job_id)

    def retry(self, job_id: str) -> bool:
        self.retried.append(job_id)
        return True


def _job(job_id: str, state: State, result: Any = None, error: ErrorInfo | None = None) -> JobInfo:
    encoded = None if result is None else JSON.encode(result)
    return JobInfo(job_id, "t", "default", state, 1, result=encoded, error=error)


def _gate(inspector: StubInspector) -> Gate:
    return Gate(FakeClock(), lambda: inspector, JSON)  # type: ignore[arg-type, return-value]


def _run(gate: Gate, meta: dict[str, str]) -> tuple[Any, ...]:
    job = JobContext("me", "t", 1, "default", meta)
    return gate.execute(job, lambda: fed(job, ("own",)))  # type: ignore[no-any-return]


def test_succeeded_dependencies_feed_their_results_in_order() -> None:
    jobs = {"a": _job("a", State.SUCCEEDED, 1), "b": _job("b", State.SUCCEEDED, [2])}
    gate = _gate(StubInspector(jobs))
    meta = {"offload.after": "a,b", "offload.feed": "list"}
    assert _run(gate, meta) == ([1, [2]], "own")
    assert _run(gate, {**meta, "offload.feed": "first"}) == (1, "own")
    assert _run(gate, {"offload.after": "a,b"}) == ("own",), "depends_on feeds nothing"
    assert _run(gate, {**meta, "offload.fed": "1"}) == ([1], "own"), "only the first one feeds"


def test_an_unfinished_dependency_puts_the_step_back_to_wait() -> None:
    jobs = {"a": _job("a", State.SUCCEEDED, 1), "b": _job("b", State.RUNNING)}
    with pytest.raises(offload.Delay):
        _run(_gate(StubInspector(jobs)), {"offload.after": "a,b", "offload.since": "0"})
    with pytest.raises(offload.Delay):
        _run(_gate(StubInspector(jobs, down=True)), {"offload.after": "a"})


def test_a_failed_dependency_fails_the_step_unrun_with_its_own_error() -> None:
    record = ErrorInfo("builtins.KeyError", "'sku'", "Traceback ...\nKeyError: 'sku'\n", '["sku"]')
    jobs = {"a": _job("a", State.FAILED, error=record)}
    with pytest.raises(Skip) as raised:
        _run(_gate(StubInspector(jobs)), {"offload.after": "a"})
    skip = raised.value
    assert isinstance(skip.error, KeyError) and skip.error.args == ("sku",)
    assert skip.info is not None and skip.info.type == "builtins.KeyError"
    assert skip.info.traceback.startswith("job me did not run: job a, which it depends on")


def test_a_cancelled_or_missing_dependency_ends_the_step_unrun() -> None:
    with pytest.raises(Skip) as cancelled:
        _run(_gate(StubInspector({"a": _job("a", State.CANCELLED)})), {"offload.after": "a"})
    assert cancelled.value.error is None, "cancelled, not failed"
    with pytest.raises(Skip) as missing:
        _run(_gate(StubInspector({})), {"offload.after": "gone"})
    assert isinstance(missing.value.error, offload.TaskNotFound)


def test_a_step_that_succeeds_requeues_the_steps_that_failed_because_of_it() -> None:
    jobs = {
        "next1": _job("next1", State.FAILED),
        "next2": _job("next2", State.QUEUED),
        "next3": _job("next3", State.CANCELLED),
    }
    inspector = StubInspector(jobs)
    assert _run(_gate(inspector), {"offload.next": "next1,next2,next3"}) == ("own",)
    assert inspector.retried == ["next1", "next3"]


def test_a_pickle_seal_covers_what_a_step_waits_for_and_is_fed() -> None:
    from offload._message import Message
    from offload._serializers import PickleSerializer

    serializer = PickleSerializer(b"k" * 32)
    step = Message("id", "t", (), {}, meta={"offload.after": "a", "offload.feed": "first"})
    serializer.seal(step)
    serializer.check_seal(step)
    assert step.meta is not None
    step.meta["offload.after"] = "someone-else"
    with pytest.raises(offload.PayloadRejected):
        serializer.check_seal(step)
    plain = Message("id", "t", (), {}, meta={"trace": "x"})
    serializer.seal(plain)
    assert plain.meta is not None
    plain.meta["trace"] = "y"  # other meta is not sealed: enqueue middleware adds it later
    serializer.check_seal(plain)
