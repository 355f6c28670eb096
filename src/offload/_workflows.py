"""Workflows: ``chain``, ``group``, ``chord`` and ``depends_on``, made of signatures.

A workflow is enqueued whole: every step becomes a message in one batch
(one transaction on SQLite and PostgreSQL, one script on Redis), so nothing
can be lost between two steps, and a chord's callback is enqueued exactly
once, with the rest. Each step's ``meta`` names what it waits for; the
``Gate`` (``offload._workflow_gate``) holds it in the broker until then.

- ``chain(a.s(1), b.s(), c.s())``: each step's result is the next one's
  first argument; the handle is the last step's.
- ``group(a.s(i) for i in range(10))``: all in parallel; the handle is a
  small collector job (offload's own task ``offload.group``, declared by
  every app) whose result is the list of results, in order.
- ``chord(group, callback.s())``: the callback gets that list; the handle
  is the callback's.
- ``task.options(depends_on=[h1, h2])(...)``: run after those jobs succeed.

Nodes nest: a chain of groups, a group of chains, a chord in a chain.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar, overload

from ._brokers import Inspector
from ._clock import Clock
from ._errors import ConfigurationError
from ._handle import Handle, HandleMap
from ._message import new_id
from ._producer import Producer
from ._runner import AFTER, TaskSpec
from ._signature import Signature
from ._task import NO_OPTIONS, CallOptions, Submitter, make_spec
from ._workflow_gate import FED, FEED, NEXT, SINCE, Gate

R = TypeVar("R")

COLLECTOR = "offload.group"
"""The name of the task that collects a group's results (declared by every app)."""


def _collect(results: list[Any] | None = None) -> list[Any]:
    """A group's results, in order: what its handle returns."""
    return [] if results is None else list(results)


_COLLECTOR_SPEC = make_spec(_collect, name=COLLECTOR)


def collector_spec() -> TaskSpec:
    """The collector's declaration: every app registers it (a worker runs only what its
    app declares, and this is offload's own)."""
    return _COLLECTOR_SPEC


class Workflow(Generic[R]):
    """What ``offload.chain``, ``offload.group`` and ``offload.chord`` make: not run yet.

    ``workflow.delay()`` enqueues every step at once and returns one
    handle for the final result (``workflow()`` is the same).
    """

    def delay(self) -> WorkflowHandle[R]:
        """Enqueue the whole workflow (one batch); the handle of its final result."""
        builder = _Builder()
        final = builder.node(self, [], None)
        return builder.send(final)

    def __call__(self) -> WorkflowHandle[R]:
        """The same as ``delay()``."""
        return self.delay()

    def _build(self, builder: _Builder, after: list[int], feed: str | None) -> int:
        raise NotImplementedError


Node = Workflow[Any] | Signature[Any]


class Chain(Workflow[R]):
    """Steps one after the other; each step's result is the next one's first argument."""

    def __init__(self, steps: tuple[Node, ...]) -> None:
        if not steps:
            raise ConfigurationError("offload.chain() needs at least one step: a task.s(...)")
        self.steps = tuple(_node(step, "offload.chain") for step in steps)

    def _build(self, builder: _Builder, after: list[int], feed: str | None) -> int:
        for step in self.steps:
            exit_ = builder.node(step, after, feed)
            after, feed = [exit_], "first"
        return exit_

    def __repr__(self) -> str:
        return f"offload.chain({', '.join(map(repr, self.steps))})"


class Group(Workflow[list[R]]):
    """Members run in parallel; the result is the list of their results, in order."""

    def __init__(self, members: tuple[Node, ...]) -> None:
        self.members = tuple(_node(member, "offload.group") for member in members)

    def _build(self, builder: _Builder, after: list[int], feed: str | None) -> int:
        exits = [builder.node(member, after, feed) for member in self.members]
        queue = builder.steps[exits[0]].queue if exits else None
        return builder.collect(exits, queue)

    def __repr__(self) -> str:
        return f"offload.group({', '.join(map(repr, self.members))})"


class Chord(Workflow[R]):
    """A group, then a callback that gets the list of the group's results."""

    def __init__(self, header: Group[Any], callback: Node) -> None:
        self.header = header
        self.callback = _node(callback, "offload.chord")

    def _build(self, builder: _Builder, after: list[int], feed: str | None) -> int:
        exits = [builder.node(member, after, feed) for member in self.header.members]
        return builder.node(self.callback, exits, "list")

    def __repr__(self) -> str:
        return f"offload.chord({self.header!r}, {self.callback!r})"


# -- the public constructors ---------------------------------------------------------------


@overload
def chain(step: Signature[R] | Workflow[R], /) -> Chain[R]: ...
@overload
def chain(s1: Node, step: Signature[R] | Workflow[R], /) -> Chain[R]: ...
@overload
def chain(s1: Node, s2: Node, step: Signature[R] | Workflow[R], /) -> Chain[R]: ...
@overload
def chain(s1: Node, s2: Node, s3: Node, step: Signature[R] | Workflow[R], /) -> Chain[R]: ...
@overload
def chain(*steps: Node) -> Chain[Any]: ...
def chain(*steps: Node) -> Chain[Any]:
    """Run ``steps`` one after the other, each fed the previous one's result.

    >>> h = offload.chain(fetch.s(url), parse.s(), store.s()).delay()
    >>> h.result(timeout=60)          # store's result

    ``parse`` is called ``parse(<fetch's result>)``; extra arguments given in
    ``.s(...)`` follow it. A group in a chain passes on the list of its
    results. If a step fails, the steps after it do not run and the handle
    raises that step's exception.
    """
    return Chain(steps)


def group(
    *members: Signature[R] | Workflow[R] | Iterable[Signature[R] | Workflow[R]],
) -> Group[R]:
    """Run ``members`` in parallel: ``offload.group(a.s(i) for i in range(10))``.

    ``.delay()`` returns a handle whose result is the list of the members'
    results, in order (a small collector job, readable from any process
    with ``app.handle(id)``); it fails with the first failed member's
    exception.
    """
    flat: list[Signature[R] | Workflow[R]] = []
    for member in members:
        if isinstance(member, (Signature, Workflow)):
            flat.append(member)
        else:
            flat.extend(member)
    return Group(tuple(flat))


def chord(header: Group[Any] | Iterable[Node], callback: Signature[R]) -> Chord[R]:
    """Run ``header`` (a group) in parallel, then ``callback`` with the list of results.

    >>> offload.chord((count.s(page) for page in pages), total.s()).delay()

    ``total`` is called once, ``total([<results in order>])``: the callback
    is enqueued once, with the group, so it runs once however many workers
    crash (its own attempt is at-least-once, like any job).
    """
    return Chord(header if isinstance(header, Group) else group(header), callback)


def _node(node: object, where: str) -> Node:
    if not isinstance(node, (Signature, Workflow)):
        raise ConfigurationError(
            f"{where}() takes signatures (task.s(...)) and workflows, not {node!r}"
        )
    return node


# -- enqueueing a workflow --------------------------------------------------------------------


class WorkflowHandle(Handle[R]):
    """The handle of a workflow's final job, which also knows every step.

    It is the final job's handle (same ``id``: ``app.handle(id)`` in another
    process reads the same result). ``cancel()`` cancels every step not
    started yet, the final one first; running steps go on (cancelling a
    running job is a feature of its own).
    """

    steps: tuple[str, ...] = ()
    """The ids of all the workflow's jobs, in the order they were built."""
    _cancel_steps: Callable[[], None] | None = None

    def cancel(self) -> bool:
        """Cancel the final job and every step not started; ``True`` if the final one is."""
        cancelled = super().cancel()
        if self._cancel_steps is not None:
            self._cancel_steps()
        return cancelled


@dataclass
class _Step:
    spec: TaskSpec
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    options: CallOptions
    queue: str
    id: str = field(default_factory=new_id)
    after: list[int] = field(default_factory=list)
    outside: list[Any] = field(default_factory=list)
    """Handles or ids of jobs outside the workflow (``depends_on=``)."""
    feed: str | None = None
    following: list[str] = field(default_factory=list)


class _Builder:
    """Turns a workflow into steps, then sends them in one batch."""

    def __init__(self) -> None:
        self.steps: list[_Step] = []
        self.app: Submitter | None = None

    def node(self, node: Node, after: list[int], feed: str | None) -> int:
        if isinstance(node, Signature):
            return self.add(node, after, feed)
        return node._build(self, after, feed)

    def add(self, signature: Signature[Any], after: list[int], feed: str | None) -> int:
        app = signature.task._app()
        if self.app is None:
            self.app = app
        elif app is not self.app:
            raise ConfigurationError(
                f"{signature!r} belongs to another app than the workflow's first step: "
                "all the steps of a workflow run on one app"
            )
        options = signature.options
        if options.key is not None or options.connection is not None:
            raise ConfigurationError(
                f"{signature!r}: a workflow's step takes no key= or connection= option"
            )
        task = signature.task
        spec = task.spec
        if not task._import_checked and (spec.pool == "process" or app.durable):
            task._check_importable()  # as a call does: refused here, not in a worker
        queue = options.queue or spec.queue
        step = _Step(spec, signature.args, signature.kwargs, options, queue, after=list(after))
        step.outside = list(options.depends_on)
        step.feed = feed  # None at the top; "list" with no dependencies: an empty chord
        return self._append(step)

    def collect(self, exits: list[int], queue: str | None) -> int:
        """A group's collector: after all its members, fed their list."""
        spec = collector_spec()
        step = _Step(spec, (), {}, NO_OPTIONS, queue or spec.queue, after=list(exits))
        step.feed = "list"
        if queue is not None:
            step.options = CallOptions(queue=queue)
        return self._append(step)

    def _append(self, step: _Step) -> int:
        self.steps.append(step)
        for index in step.after:
            self.steps[index].following.append(step.id)
        return len(self.steps) - 1

    def send(self, final: int) -> WorkflowHandle[Any]:
        if self.app is None:
            raise ConfigurationError("a workflow needs at least one step: a task.s(...)")
        return workflows_of(self.app).send(self.steps, final)


class Workflows:
    """An app's side of workflows: the gate its workers run, and the batch its calls send."""

    def __init__(
        self,
        producer: Producer,
        handles: HandleMap,
        clock: Clock,
        inspector: Callable[[], Inspector],
        *,
        durable: bool,
        gate: Gate,
    ) -> None:
        self._producer = producer
        self._handles = handles
        self._clock = clock
        self._inspector = inspector
        self.durable = durable
        self.gate = gate

    def submit(
        self,
        spec: TaskSpec,
        calls: list[tuple[tuple[Any, ...], dict[str, Any]]],
        options: CallOptions,
    ) -> list[Handle[Any]]:
        """Calls with ``depends_on=``, all in one batch: each waits for those jobs."""
        if options.key is not None:
            raise ConfigurationError(
                f"{spec.name}.options(key=..., depends_on=...): a call that waits for others "
                "takes no key"
            )
        steps = []
        for args, kwargs in calls:
            step = _Step(spec, args, kwargs, options, options.queue or spec.queue)
            step.outside = list(options.depends_on)
            steps.append(step)
        handles = self._enqueue(steps, {}, options.connection)
        return [handles[step.id] for step in steps]

    def send(self, steps: list[_Step], final: int) -> WorkflowHandle[Any]:
        """Enqueue ``steps`` in one batch; the final step's handle, which knows them all."""
        last = steps[final]
        handle: WorkflowHandle[Any] = WorkflowHandle(last.id, last.spec.name)
        handle.steps = tuple(step.id for step in steps)
        handles = self._enqueue(steps, {last.id: handle})
        others = [handles[step.id] for step in steps if step is not last]
        ids = [step.id for step in steps if step is not last]
        if self.durable:
            inspector = self._inspector

            def cancel_steps() -> None:
                for job_id in reversed(ids):
                    inspector().cancel(job_id)
        else:

            def cancel_steps() -> None:
                for other in reversed(others):
                    other.cancel()
                    self.gate.forget(other.id)

        handle._cancel_steps = cancel_steps
        return handle

    def _enqueue(
        self, steps: list[_Step], made: dict[str, Handle[Any]], connection: Any = None
    ) -> dict[str, Handle[Any]]:
        """Send the steps' messages in one batch; every step's handle by id."""
        local = not self.durable
        if local:  # in-process: handles first, the gate told what each step waits for
            for step in steps:
                made.setdefault(step.id, Handle(step.id, step.spec.name))
        since = f"{self._clock.now():.3f}"
        messages = []
        for step in steps:
            outside = [self._outside(dependency) for dependency in step.outside]
            after = [steps[index].id for index in step.after]
            meta = _meta(step, after + [handle.id for handle in outside], len(after), since)
            if local and AFTER in meta:
                waits = [made[job_id] for job_id in after] + outside
                self.gate.hold(step.id, waits)
                # However the step ends (cancelled before it ran too), the gate lets go.
                made[step.id].add_done_callback(functools.partial(_forget, self.gate, step.id))
            messages.append(
                self._producer.message(
                    step.spec, step.args, step.kwargs, step.options, job_id=step.id, meta=meta
                )
            )
        for job_id, handle in made.items():
            self._handles[job_id] = handle  # the producer's send finds them, the runner too
        try:
            sent = self._producer.send(messages, connection)
        except BaseException:
            for step in steps:
                self._handles.pop(step.id, None)
                self.gate.forget(step.id)
            raise
        for handle in made.values():
            if self.durable:
                self._producer.watch(handle)
        return {
            step.id: made.get(step.id) or handle for step, handle in zip(steps, sent, strict=True)
        }

    def _outside(self, dependency: Handle[Any] | str) -> Handle[Any]:
        """A ``depends_on=`` item as a handle (in-process: the live one, which the gate reads)."""
        if isinstance(dependency, Handle):
            return dependency
        found = self._handles.get(dependency)
        if found is not None:
            return found
        if not self.durable:
            raise ConfigurationError(
                f"depends_on={dependency!r}: no unfinished call of this in-process app has "
                "that id; pass the call's handle"
            )
        return Handle(dependency, "?")


def _forget(gate: Gate, job_id: str, _: object) -> None:
    gate.forget(job_id)


def _meta(step: _Step, ids: list[str], fed: int, since: str) -> dict[str, str]:
    """The meta of a step's message: what it waits for, how it is fed, what follows it."""
    meta: dict[str, str] = {}
    if ids or step.feed is not None:
        meta[AFTER] = ",".join(ids)
        meta[SINCE] = since
        if step.feed is not None:
            meta[FEED] = step.feed
            if fed != len(ids):
                meta[FED] = str(fed)
    if step.following:
        meta[NEXT] = ",".join(step.following)
    return meta


def workflows_of(app: Submitter) -> Workflows:
    """The workflow side of the app a task belongs to."""
    found = getattr(app, "workflows", None)
    if not isinstance(found, Workflows):
        raise ConfigurationError(f"workflows run on an offload.App, not on {app!r}")
    return found
