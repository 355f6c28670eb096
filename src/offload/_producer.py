"""The producer side of an app: a call becomes a message, then a stored job with a handle.

One path for every broker: options applied and checked, arguments encoded
(durable apps), the ``enqueue`` middleware around the store, then one
handle per job id (an existing job's handle when a key matched one). The
in-process hot path skips only what has nothing to do there: encoding,
middleware when there is none, the result watcher.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from ._brokers import Broker, Inspector, MemoryBroker
from ._brokers._base import ResultFeed, Transactional
from ._brokers._url import redacted
from ._clock import Clock
from ._embedded import EmbeddedWorker
from ._errors import ConfigurationError
from ._handle import Handle, HandleMap
from ._limits import KEY_META
from ._message import DEFAULT_MAX_DELIVERIES, Message, new_id, option_problem
from ._middleware import Chain
from ._results import ResultWatcher
from ._runner import TaskSpec
from ._serializers import JsonSerializer, ModulePolicy, PickleSerializer, Serializer, encode_call
from ._task import NO_OPTIONS, CallOptions


class Producer:
    """Sends the calls of one app to its broker."""

    def __init__(
        self,
        broker: Broker,
        clock: Clock,
        handles: HandleMap,
        *,
        url: str,
        serializer: Serializer | None,
        chain: Chain | None,
        registry: dict[str, TaskSpec],
        embedded: EmbeddedWorker | None,
        inspector: Callable[[], Inspector],
        classes: ModulePolicy,
        name: str,
    ) -> None:
        self._broker = broker
        self._clock = clock
        self._handles = handles
        self._url = url
        self._serializer = serializer
        """Set for durable apps: arguments are encoded before they reach the broker."""
        self._chain = chain if chain is not None and chain.wraps_enqueue else None
        self._registry = registry
        self._embedded = embedded
        self._inspector = inspector
        self._classes = classes
        self._name = name
        # In-process with no enqueue middleware: the memory broker's own enqueue.
        local = broker if serializer is None and self._chain is None else None
        self._local = local if isinstance(local, MemoryBroker) else None
        self._watcher: ResultWatcher | None = None
        self._lock = threading.Lock()

    def submit(
        self, spec: TaskSpec, args: tuple[Any, ...], kwargs: dict[str, Any], options: CallOptions
    ) -> Handle[Any]:
        message = self.message(spec, args, kwargs, options)
        local = self._local
        if local is not None and options.key is None and options.connection is None:
            # The in-process hot path (a key or a connection takes the long one).
            handle: Handle[Any] = Handle(message.id, spec.name)
            self._handles[message.id] = handle
            worker = self._embedded.worker if self._embedded is not None else None
            # With a slot free, the call is claimed from this thread, as
            # ThreadPoolExecutor hands a call to a thread at submit time, rather
            # than by waking the dispatcher: one hand-off per call instead of two;
            # and when the caller then busy-waits holding the GIL (the seed's
            # cell), the dispatcher would get it back only every switch interval.
            if (
                worker is None
                or message.eta is not None
                or not worker.claim_here(message, local.enqueue_and_claim)  # every slot taken
            ):
                local.enqueue((message,))
            return handle
        if self._chain is None and options.connection is None:
            # One message and no middleware: ``send`` without a batch's plumbing.
            return self._handle_for(message, self._broker.enqueue((message,))[0], False)
        return self.send([message], options.connection)[0]

    def message(
        self,
        spec: TaskSpec,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        options: CallOptions,
        *,
        job_id: str | None = None,
        meta: dict[str, str] | None = None,
    ) -> Message:
        """The message for one call, its options applied and checked.

        ``job_id`` and ``meta`` are a workflow's (its steps name each other):
        set here, before a pickle seal covers them.
        """
        if self._embedded is not None and self._embedded.worker is None:
            self._embedded.start()
        if self._registry.get(spec.name) is not spec:
            self._registry[spec.name] = spec
        message = Message(job_id or new_id(), spec.name, args, kwargs, spec.queue, spec.priority)
        if spec.limits is not None or meta:  # most calls have neither: no call made
            message.meta = _meta(spec, args, kwargs, meta)
        serializer = self._serializer
        if serializer is not None:
            message.payload = encode_call(serializer, args, kwargs)
            message.args, message.kwargs = (), {}
            message.created = self._clock.now()
            message.max_deliveries = spec.max_deliveries
            message.result_ttl = spec.result_ttl
        if options is not NO_OPTIONS:
            _apply(message, options, self._clock)
            problem = option_problem(message)
            if problem is not None:
                raise ConfigurationError(f"{spec.name}.options(...): {problem}")
        if serializer is None:
            return message
        if message.max_deliveries is None:
            # The broker's default (for messages that carry none) counts every
            # delivery: a task's own retries must not use up its crash allowance.
            retries = spec.policy.retries if message.retries is None else message.retries
            message.max_deliveries = DEFAULT_MAX_DELIVERIES + retries
        if isinstance(serializer, PickleSerializer):
            serializer.seal(message)
        return message

    def send(self, messages: list[Message], connection: Any = None) -> list[Handle[Any]]:
        """Store ``messages`` in one batch (inside ``connection``'s transaction if given)."""
        ids = self.store(messages, connection)
        return [
            self._handle_for(message, job_id, connection is not None)
            for message, job_id in zip(messages, ids, strict=True)
        ]

    def store(self, messages: list[Message], connection: Any = None) -> list[str]:
        """Store ``messages`` through the enqueue middleware; their job ids (no handles)."""

        def store(batch: list[Message]) -> list[str]:
            if connection is None:
                return self._broker.enqueue(batch)
            return self._transactional().enqueue_in(batch, connection)

        chain = self._chain
        ids = store(messages) if chain is None else chain.enqueue(messages, store)
        if len(ids) != len(messages):
            raise ConfigurationError(
                f"an enqueue middleware returned {len(ids)} job ids for {len(messages)} "
                "messages; it must return call_next(messages)'s answer"
            )
        return ids

    def _handle_for(self, message: Message, job_id: str, uncommitted: bool) -> Handle[Any]:
        handle = self._handles.get(job_id)  # an existing job with the same key
        if handle is None:
            handle = Handle(job_id, message.task)
            handle._uncommitted = uncommitted  # absent until the caller commits
            self._handles[job_id] = handle
            if self._serializer is not None:
                self.watch(handle)
        return handle

    def watch(self, handle: Handle[Any]) -> None:
        """Settle ``handle`` from the broker once its job ends (durable apps)."""
        watcher = self._watcher
        if watcher is None:
            with self._lock:
                if self._watcher is None:
                    self._watcher = ResultWatcher(
                        self._inspector(),
                        self._serializer or JsonSerializer(modules=self._classes),
                        self._name,
                        self._broker if isinstance(self._broker, ResultFeed) else None,
                    )
                watcher = self._watcher
        watcher.watch(handle)

    def stop(self) -> None:
        if self._watcher is not None:
            self._watcher.stop()

    def _transactional(self) -> Transactional:
        if not isinstance(self._broker, Transactional):
            raise ConfigurationError(
                "options(connection=...) enqueues inside your database transaction; this "
                f"app's broker ({redacted(self._url)}) cannot. Use a postgresql:// or "
                "sqlite:/// app, or drop connection="
            )
        return self._broker


def _apply(message: Message, options: CallOptions, clock: Clock) -> None:
    if options.delay is not None:
        message.eta = clock.now() + options.delay
    if options.eta is not None:
        message.eta = options.eta
    if options.priority is not None:
        message.priority = options.priority
    if options.queue is not None:
        message.queue = options.queue
    message.key = options.key
    message.timeout = options.timeout
    message.retries = options.retries


def _meta(
    spec: TaskSpec, args: tuple[Any, ...], kwargs: dict[str, Any], meta: dict[str, str] | None
) -> dict[str, str] | None:
    """A new message's meta: a workflow's links, and the call's limit key (from its plain
    arguments, at the call); None when it has neither (most calls)."""
    limits = spec.limits
    key = None if limits is None or limits.key is None else limits.key_for(args, kwargs)
    if key is None:
        return dict(meta) if meta else None
    return {**(meta or {}), KEY_META: key}
