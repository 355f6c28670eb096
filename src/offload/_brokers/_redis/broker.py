"""``RedisBroker``: the claim path (enqueue, claim, ack, nack, extend), wake-ups, the result feed.

What it stores, and where, is described in the package's ``__init__``;
reading and managing stored jobs is ``RedisInspector``'s (``inspector.py``).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import redis

from ..._clock import SYSTEM_CLOCK, Clock
from ..._errors import BrokerUnavailable, ConfigurationError
from ..._message import Delivery, ErrorInfo, Message, Outcome
from .._base import Finished, Lease, keep_for_horizon
from . import rows, scripts
from .claims import ClaimPath, Names, job_id
from .feed import Subscription
from .inspector import RedisInspector
from .limits import RedisLimits
from .link import Arg, Downtime, Link, Script, WaitLink, clients, packed, split_namespace
from .schedules import RedisSchedules
from .workers import RedisRegistry

log = logging.getLogger(__name__)

_T = TypeVar("_T")
_B = TypeVar("_B", bound="RedisBroker")

_NAMESPACE = re.compile(r"[A-Za-z0-9_.-]{1,64}\Z")
_UNREACHABLE = (redis.ConnectionError, redis.TimeoutError)
_FIRST, _AGAIN = packed([b"0"]), packed([b"1"])  # ENQUEUE_ONE's last argument: replay?


class RedisBroker:
    """Jobs in a Redis server, shared by every process that reaches it.

    ``result_ttl``: seconds a finished job (and its result) is kept, unless
    its message says otherwise; failed jobs stay until purged.
    ``reuse_window``: seconds after a success during which enqueueing its
    key returns the finished job. ``namespace`` (or ``?namespace=`` in the
    URL): the key prefix (``offload:<namespace>:``), so several apps share
    one server.

    A call that cannot reach the server is tried 3 times over about a
    second, then raises ``BrokerUnavailable``. Socket timeouts (5 s; set
    ``?socket_timeout=`` in the URL to change them) bound every call.
    """

    BACKOFF = (0.2, 0.8)
    """Seconds between the tries of a call whose connection failed."""
    PRUNE_EVERY = 60.0
    """Claims delete expired results at most this often (clock seconds)..."""
    PRUNE_BATCH = 1000
    """... and at most this many at a time: a script blocks the server while it runs."""
    PROMOTE_BATCH = 1000
    """Due delayed jobs and lapsed leases a claim moves to their queue, at most."""
    BLOCK = 10.0
    """Longest single BLPOP of a wait (seconds); a longer wait re-checks and blocks again."""
    FRESH = 0.01
    """A wait right after an empty claim (seconds) uses what the claim saw."""
    REGISTER_EVERY = 1.0
    """An enqueue lists its queue in ``queues`` at most this often (seconds) per broker object."""
    WAIT_SHARE = 0.1
    """A ``wait_and_claim`` blocks at most this share of the lease at a time: its claim's
    time is taken as the wait begins, so a lease it claims is that much shorter."""

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        clock: Clock = SYSTEM_CLOCK,
        result_ttl: float = 86400.0,
        reuse_window: float = 0.0,
        namespace: str | None = None,
    ) -> None:
        url, self.namespace = _namespace(url, namespace)
        self.prefix = f"offload:{self.namespace}:"
        self._packed_prefix = packed([self.prefix.encode()])  # ENQUEUE_ONE's first argument
        self._clock = clock
        self._result_ttl, self._reuse_window = result_ttl, reuse_window
        self._client, self._blocking = clients(url, self.BLOCK + 5.0)
        self._where = _address(self._client)
        self._downtime = Downtime(self._where)
        # State changes share one connection (link.py), claims have their own (a claim
        # for nothing just before a wait never holds up an ack), and so do waits.
        self._link, self._claim_link = (Link(self._client.connection_pool) for _ in "12")
        self._waits = WaitLink(self._blocking.connection_pool)
        lua = scripts.Scripts(self._link, claims=self._claim_link)
        self._probe, self._lua = lua.probe, lua
        self._path = ClaimPath(
            prefix=self.prefix,
            clock=clock,
            result_ttl=result_ttl,
            lua=lua,
            call=self._call,
            holder=lambda: self.registry.holder or "",
            batches=(self.PROMOTE_BATCH, self.PRUNE_EVERY, self.PRUNE_BATCH),
        )
        self._wake_self = f"{self.prefix}interrupt:{uuid.uuid4().hex}"
        # Where acks tell this object's producer that its jobs finished, while
        # it listens ("" when not: then no job carries it, nothing is sent).
        self._reply_channel = f"{self.prefix}done:{uuid.uuid4().hex}"
        self._reply_to = ""
        self._feed: Subscription | None = None
        self._lock, self._waiting = threading.Lock(), 0  # waiters of wait_for_messages
        self._closed, self._listing = threading.Event(), Listing()
        self._inspector = RedisInspector(
            prefix=self.prefix,
            clock=clock,
            result_ttl=result_ttl,
            batch=self.PRUNE_BATCH,
            client=self._client,
            link=self._link,
            scripts=lua,
            call=self._call,
        )

    @classmethod
    def from_url(
        cls: type[_B],
        url: str,
        *,
        clock: Clock = SYSTEM_CLOCK,
        result_ttl: float = 86400.0,
        reuse_window: float = 0.0,
        namespace: str | None = None,
    ) -> _B:
        """A broker for ``redis://[[user]:password@]host:port/db`` or ``rediss://`` (TLS).

        ``?namespace=app1`` in the URL works as the keyword does, so that
        ``OFFLOAD_URL`` alone can place an app on a shared server.
        """
        return cls(
            url,
            clock=clock,
            result_ttl=result_ttl,
            reuse_window=reuse_window,
            namespace=namespace,
        )

    def __repr__(self) -> str:
        return f"RedisBroker({self._where!r}, namespace={self.namespace!r})"

    @property
    def inspector(self) -> RedisInspector:
        """Reads and manages this namespace's jobs, through this broker's connections."""
        return self._inspector

    @property
    def schedules(self) -> RedisSchedules:
        """Periodic schedules' fire times (``ScheduleStore``), in this namespace."""
        return RedisSchedules(self.prefix, self._link, self._lua.fire, self._call)

    @functools.cached_property
    def registry(self) -> RedisRegistry:
        """The worker registry (``WorkerRegistry``): live workers, and who holds what."""
        return RedisRegistry(self.prefix, self._clock, self._client, self._lua.workers, self._call)

    @functools.cached_property
    def limits(self) -> RedisLimits:
        """Rate and concurrency limits, kept by Lua scripts through this broker's connection."""
        return RedisLimits(self._link, self.prefix, self._clock, self._call)

    # -- the contract ----------------------------------------------------------

    def enqueue(self, messages: Sequence[Message]) -> list[str]:
        if not messages:
            return []
        now = self._clock.now()
        keep_for_horizon(messages, self._result_ttl)
        listing = self._listing.due(messages)
        if len(messages) == 1 and messages[0].key is None:  # the usual call
            command = rows.lone_command(
                self._packed_prefix, now, messages[0], bool(listing), self._reply_to
            )
            if command is not None:
                self._call(functools.partial(_enqueue_one, self._lua.enqueue_one, *command))
                if listing:
                    self._listing.done(listing, self.REGISTER_EVERY)
                return [messages[0].id]
        since = now - self._reuse_window
        args = rows.enqueue_args(self.prefix, now, since, self._reply_to, messages)
        if listing:
            args[5] = "1"
        script = self._lua.enqueue

        def run(again: bool) -> list[str]:
            # A retry may follow a call whose answer was lost after it ran:
            # then its ids exist, and are ours (a script runs all or nothing).
            args[3] = "1" if again else "0"
            try:
                ids = script(args=args)
            except redis.ResponseError as error:
                if "already exists" not in str(error):
                    raise
                raise ValueError(f"a job id of this batch already exists ({error})") from None
            return [job_id.decode() for job_id in ids]

        ids = self._call(run)
        if listing:
            self._listing.done(listing, self.REGISTER_EVERY)
        return ids

    def claim(self, queues: Sequence[str] | None, limit: int, lease: float) -> list[Delivery]:
        if limit <= 0:
            return []
        # A worker's threads that claim at once share one script call.
        return self._path.claim(_names(queues), limit, lease)

    def ack(self, delivery: Delivery, outcome: Outcome) -> bool:
        # A worker's threads that finish at once share one script call.
        return self._path.ack(delivery, outcome)

    def ack_and_claim(
        self,
        delivery: Delivery,
        outcome: Outcome,
        queues: Sequence[str] | None,
        limit: int,
        lease: float,
    ) -> tuple[bool, list[Delivery]]:
        """``AckAndClaim``: one ``ACK_CLAIM`` script (``lua/ack_claim.lua``)."""
        return self._path.ack_and_claim(delivery, outcome, _names(queues), limit, lease)

    def nack(
        self,
        delivery: Delivery,
        retry_at: float | None,
        *,
        error: ErrorInfo | None = None,
        penalty: bool = True,
    ) -> bool:
        args: list[Arg] = [
            self.prefix,
            job_id(delivery),
            delivery.token,
            repr(self._clock.now()),
            "" if retry_at is None else repr(retry_at),
            rows.error_text(error),
            "1" if penalty else "0",
        ]
        return bool(self._call(lambda _: self._lua.nack(args=args)))

    def extend(self, delivery: Delivery, lease: float) -> Lease:
        until = self._clock.now() + lease
        args: list[Arg] = [self.prefix, job_id(delivery), delivery.token, repr(until)]
        answer = self._call(lambda _: self._lua.extend(args=args))
        if not answer:
            return Lease.LOST
        delivery.lease_until = until
        return Lease.CANCEL if answer == 2 else Lease.HELD

    def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        self.interrupt()
        # Closing the sockets also ends a BLPOP the interrupt could not reach.
        self.stop_listening()
        for client in (self._blocking, self._client):
            client.connection_pool.disconnect()
        self._waits.close()
        self._link.close()
        self._claim_link.close()

    def drop(self) -> int:
        """Delete every key of this namespace: all its jobs, results and queues; how many."""
        self._listing.forget()

        def run(_: bool) -> int:
            deleted = 0
            batch: list[str] = []
            for key in self._client.scan_iter(match=f"{self.prefix}*", count=1000):
                batch.append(key)
                if len(batch) >= 1000:
                    deleted += int(self._client.unlink(*batch))
                    batch.clear()
            return deleted + (int(self._client.unlink(*batch)) if batch else 0)

        return self._call(run)

    # -- wake-ups --------------------------------------------------------------

    def wait_for_messages(self, timeout: float, queues: Sequence[str] | None = None) -> None:
        """Block (``BLPOP``) until an enqueue of ``queues`` (any for None) or a retry
        pushes a wake-up token, ``interrupt()``, the next eta or lease end, or ``timeout``.

        A lost connection ends the wait at once: the next claim reports it.
        """
        deadline = time.monotonic() + timeout
        lists = _wake_lists(self.prefix, queues, self._wake_self)
        with _counted_wait(self):
            while not self._closed.is_set():
                block = self._block_for(deadline - time.monotonic(), queues)
                if block < 0.001 or self._blocking.blpop(lists, min(block, self.BLOCK)):
                    return
                if block <= self.BLOCK:  # woke at a due time: something may be claimable
                    return

    def wait_and_claim(
        self, timeout: float, queues: Sequence[str] | None, limit: int, lease: float
    ) -> list[Delivery]:
        """``WaitAndClaim``: the ``BLPOP`` of ``wait_for_messages`` with a ``CLAIM``
        behind it on the same connection, which the server runs as the wait ends.

        A wake-up whose job another worker took waits again; an interrupt, a
        lost connection or ``timeout`` ends it.
        """
        if limit <= 0:
            self.wait_for_messages(timeout, queues)
            return []
        deadline = time.monotonic() + timeout
        lists = _wake_lists(self.prefix, queues, self._wake_self)
        # A claim whose answer a cut connection lost lapses and comes back.
        with _counted_wait(self):
            while not self._closed.is_set():
                block = self._idle_for(deadline - time.monotonic(), _names(queues))
                if block is None or block < 0.001:
                    # No claim just emptied the queues (so the worker claims as
                    # it would without a wait), or one is due, or time is up.
                    return self.claim(queues, limit, lease)
                block = min(block, self.BLOCK, lease * self.WAIT_SHARE)
                woken, deliveries = self._wait_then_claim(lists, block, queues, limit, lease)
                if deliveries or (woken and woken[0] == lists[-1].encode()):
                    return deliveries  # claimed, or interrupted
        return []

    def _wait_then_claim(
        self, lists: list[str], block: float, queues: Sequence[str] | None, limit: int, lease: float
    ) -> tuple[Any, list[Delivery]]:
        """One ``BLPOP`` of ``block`` seconds and the ``CLAIM`` behind it: the pop, the claim."""
        script = self._lua.claim

        def send(args: list[Arg]) -> tuple[Any, Any]:
            woken, found = self._waits.blocked_then(
                ("BLPOP", *lists, f"{block:.3f}"), ("EVALSHA", script.sha, 0, *args)
            )
            if isinstance(found, redis.exceptions.NoScriptError):
                found = script(args=args)  # a restarted server: loaded, then claimed
            elif isinstance(found, Exception):
                raise found
            return woken, found

        return self._path.claim_after(send, _names(queues), limit, lease)

    def _block_for(self, remaining: float, queues: Sequence[str] | None) -> float:
        """Seconds to block: 0 when something is claimable, else until the next due time."""
        names = _names(queues)
        block = self._idle_for(remaining, names)
        if block is not None:
            return block
        ready, due, lease_end = self._probe(args=[self.prefix, *names])
        return 0.0 if ready else _until(remaining, self._clock.now(), due, lease_end)

    def _idle_for(self, remaining: float, names: Names) -> float | None:
        """Seconds to block as told by a claim of ``names`` that just emptied them; None if
        none did (the view is used once: whatever comes after it pushes a wake-up token)."""
        idle, self._path.idle = self._path.idle, None
        if idle is None or idle[1] != names or time.monotonic() - idle[0] >= self.FRESH:
            return None
        return _until(remaining, self._clock.now(), idle[2], idle[3])

    def interrupt(self) -> None:
        with self._lock:
            waiting = self._waiting
        if not waiting:
            return
        try:
            pipe = self._client.pipeline(transaction=False)
            pipe.lpush(self._wake_self, *["1"] * waiting)
            pipe.pexpire(self._wake_self, 60_000)  # tokens nobody took do not linger
            pipe.execute()
        except redis.RedisError:
            # The server is out of reach: closing the sockets wakes the waiters.
            self._blocking.connection_pool.disconnect()
            self._waits.close()

    # -- results ----------------------------------------------------------------

    def wait_for_results(self, timeout: float) -> list[Finished]:
        """Jobs enqueued here that finished, waiting up to ``timeout`` for the first.

        The first call subscribes to this object's reply channel; from then
        on its enqueues carry the channel, and their acks ``PUBLISH`` the job
        id and outcome there. At most once (nothing is kept for a producer that is not
        reading): polling stays the fallback. One thread at a time may wait.
        """
        feed = self._feed
        try:
            if feed is None:
                pool = self._blocking.connection_pool
                feed = self._feed = Subscription(pool, self._reply_channel)
                feed.read(0.0)  # subscribed before any enqueue names the channel
                self._reply_to = self._reply_channel
            news = [done for data in feed.read(timeout) if (done := rows.finished(data))]
        except Exception as error:
            if feed is not None and self._feed is not feed:
                # stop_listening() from another thread closed it under us:
                # whatever redis-py raises then, the wait is over.
                return []
            if not isinstance(error, (redis.RedisError, OSError)):
                raise
            # A lost connection: finishes may have been missed; the caller
            # polls, and the next wait subscribes again.
            log.debug("offload: the result feed was cut: %s", error)
            self.stop_listening()
            self._closed.wait(min(timeout, 0.1))  # no busy loop while the server is away
            return []
        return news

    def interrupt_results(self) -> None:
        """End a ``wait_for_results`` blocked in another thread at once, still listening.

        Nothing published meanwhile is lost: the next wait reads it. (A
        blocked ``handle.result()`` takes the reading over from the result
        watcher's thread this way: see ``ResultWatcher.wait``.)
        """
        feed = self._feed
        if feed is not None:
            feed.interrupt()

    def stop_listening(self) -> None:
        """Unsubscribe: enqueues stop carrying the reply channel; ends a wait at once."""
        self._reply_to = ""
        feed, self._feed = self._feed, None
        if feed is not None:
            with contextlib.suppress(redis.RedisError, OSError):
                feed.close()

    # -- internals -------------------------------------------------------------

    def _call(self, operation: Callable[[bool], _T]) -> _T:
        """Run ``operation`` (told whether it is a retry), retrying a lost connection.

        3 tries over about a second, then ``BrokerUnavailable``: a producer
        never hangs, and never hears of success for a message not stored.
        The inspector's calls come here too: one outage, one log line.
        """
        failure: Exception | None = None
        for attempt in range(len(self.BACKOFF) + 1):
            if attempt and self._closed.wait(self.BACKOFF[attempt - 1]):
                break  # closing: no more tries
            try:
                result = operation(attempt > 0)
            except redis.AuthenticationError as error:
                raise ConfigurationError(
                    f"Redis at {self._where} refused the credentials ({error}): check the "
                    "user and password in the URL (redis://user:password@host:port/db)"
                ) from error
            except _UNREACHABLE as error:
                failure = error
                self._downtime.lost(error)
                continue
            self._downtime.found()
            return result
        raise BrokerUnavailable(
            f"Redis at {self._where} is unreachable after {len(self.BACKOFF) + 1} tries over "
            f"{sum(self.BACKOFF):g} s ({failure}); check that the server runs and that this "
            "host can reach it. A call cut off mid-way may still have taken effect: give "
            "messages a key to make retrying an enqueue safe."
        ) from failure


class Listing:
    """Which queues an enqueue must list in ``queues`` (where workers for all queues look).

    Listing a queue on every enqueue cost a command per call; once per
    ``RedisBroker.REGISTER_EVERY`` seconds per queue still lists it again
    soon after anything deleted the set (``RedisBroker.drop()`` forgets at once).
    """

    def __init__(self) -> None:
        self._until: dict[str, float] = {}  # queue -> until when it needs no listing

    def due(self, messages: Sequence[Message]) -> list[str]:
        """The queues of ``messages`` not listed lately: list them with this enqueue."""
        until = self._until
        now = time.monotonic()
        if len(messages) == 1:
            queue = messages[0].queue
            return [] if until.get(queue, 0.0) > now else [queue]
        return list({m.queue: None for m in messages if until.get(m.queue, 0.0) <= now})

    def done(self, queues: list[str], every: float) -> None:
        """An enqueue that listed ``queues`` succeeded: no need again for ``every`` seconds."""
        until = time.monotonic() + every
        for queue in queues:
            self._until[queue] = until

    def forget(self) -> None:
        self._until.clear()


@contextlib.contextmanager
def _counted_wait(broker: RedisBroker) -> Iterator[None]:
    """A wait for messages: counted in ``broker._waiting`` while it lasts (``interrupt``
    wakes only counted waits), and ended, not failed, by a lost connection: closing
    the broker closes the socket under a blocked ``BLPOP``, and the next claim
    reports a real outage."""
    with broker._lock:
        broker._waiting += 1
    try:
        yield
    except Exception as error:
        if not isinstance(error, (redis.RedisError, OSError)) and not broker._closed.is_set():
            raise
        log.debug("offload: a wait for messages ended early: %s", error)
    finally:
        with broker._lock:
            broker._waiting -= 1


def _enqueue_one(script: Script, count: int, args: bytes, again: bool) -> None:
    """One message without a key, through ``ENQUEUE_ONE`` (``rows.lone_command``);
    ``again``: a retry, whose job may exist already (then it is ours)."""
    try:
        script.packed(count, args + (_AGAIN if again else _FIRST))
    except redis.ResponseError as error:
        if "already exists" not in str(error):
            raise
        raise ValueError(f"a job id of this batch already exists ({error})") from None


def _namespace(url: str, namespace: str | None) -> tuple[str, str]:
    """``url`` without its ``namespace=`` option, and the namespace (from either, checked)."""
    url, in_url = split_namespace(url)
    if in_url is not None and namespace is not None and in_url != namespace:
        raise ConfigurationError(
            f"two namespaces, {in_url!r} in the URL and {namespace!r}: give one"
        )
    name = in_url or namespace or "default"
    if not _NAMESPACE.match(name):
        raise ConfigurationError(
            f"namespace {name!r}: use 1 to 64 letters, digits, '-', '_' or '.'"
        )
    return url, name


def _address(client: redis.Redis) -> str:
    """Where ``client`` connects, for logs and errors: never the URL, which may hold a password."""
    options = client.connection_pool.connection_kwargs
    address = options.get("path") or f"{options.get('host')}:{options.get('port', 6379)}"
    return f"{address}/{options.get('db', 0)}"


def _wake_lists(prefix: str, queues: Sequence[str] | None, own: str) -> list[str]:
    """The lists a wait for ``queues`` pops a wake-up token from; ``own`` (the broker
    object's interrupt list) last."""
    names = [""] if queues is None else [f":{queue}" for queue in queues]
    return [*(f"{prefix}wake{name}" for name in names), own]


def _until(remaining: float, now: float, *moments: bytes | None) -> float:
    """``remaining`` seconds, or fewer if one of ``moments`` (clock times) comes first."""
    for moment in moments:
        if moment is not None:
            remaining = min(remaining, float(moment) - now)
    return remaining


def _names(queues: Sequence[str] | None) -> Names:
    """Queues as the claim and probe scripts take them: "*" for all, else "" and the names."""
    return ("*",) if queues is None else ("", *queues)
