"""A broker on a Redis server: any number of workers on any number of hosts.

>>> broker = RedisBroker.from_url("redis://localhost:6379/0", namespace="app1")

Every state change (enqueue, claim, ack, nack, extend, cancel, retry,
purge, prune) is one Lua script (``_redis_scripts.py``): Redis runs it to
the end before any other command, so two workers can never claim one job
and a slow worker's ack cannot overwrite a newer attempt. Time comes from
the injected clock, passed into each script.

Keys, all under ``offload:<namespace>:`` so that apps sharing a server do
not see each other's jobs:

- ``job:<id>``: a hash per job. ``q`` queue, ``p`` priority, ``s`` state,
  ``a`` attempt, ``t`` token, ``lu`` lease end, ``eta``, ``k`` key, ``md``
  max_deliveries, ``ttl`` result_ttl, ``js`` enqueue sequence, ``r`` its
  member in the ready set, ``m`` the rest of the message (JSON: task,
  timeout, retries, created, meta), ``pl`` payload, ``fin`` finished,
  ``res`` result, ``err`` last error (JSON), ``dl`` deliveries when dead-
  lettered for lapsing, ``rt`` the reply channel of a producer that waits
  for it (see ``wait_for_results``), ``bad`` why a script found the job
  corrupt (its claim hands it over as a defect). The fields a script
  decides on are fields of their own; what only Python reads travels as
  one JSON field, which keeps the enqueue and claim scripts short.

  Anyone who reaches the server can change or delete a hash, and Redis can
  evict one: no script fails half-way on such a job (see ``_COMMON`` in
  ``_redis_scripts``), a claim hands it to the runner as a defect (dead-
  lettered alone, with the reason), and inspection shows what reads.
- ``ready:<queue>``: a sorted set of claimable jobs, score ``-priority``,
  member ``<due µs><sequence><id>`` (fixed width): highest priority first,
  then earliest due, then first in. ``ZPOPMIN`` takes the best in order.
- ``delayed``: jobs waiting for an eta or a retry time, by due time;
  promoted to their ready set by the first claim after they come due.
- ``running``: leased jobs by lease end; a claim moves lapsed ones back
  (or to the dead-letter set after ``max_deliveries``).
- ``st:<state>:<queue>``: each job once, in the index of its state, by
  enqueue sequence: counts (``ZCARD``) and newest-first listings.
- ``keys``: idempotency key -> id of the newest job with it. ``expiry``:
  finished jobs by the time their result expires. ``queues``: queue names.
  ``seq``: a counter for ordering and fencing tokens (unique across jobs).
  ``fin``: a counter of finished jobs (``change_token``).
- ``wake:<queue>`` and ``wake``: short lists an enqueue pushes a token
  into; idle workers wait on them with ``BLPOP`` (no polling).
  ``interrupt:<uuid>``, one per broker object: ``interrupt()`` pushes there.
- ``done:<uuid>``: a pub/sub channel per broker object, where acks publish
  the outcome of the jobs it enqueued while it listened.

The state changes go through one connection per broker object that its
threads share (``_redis_link``): concurrent acks become one ``ACK`` call,
concurrent claims one ``CLAIM``, and whatever else meets shares a round trip.

Results are kept ``result_ttl`` seconds by pruning (the ``expiry`` index),
not by Redis key expiry: the indexes must forget a job together with its
hash, and expiry runs on Redis's clock, not the injected one.

Durability is Redis's: a Redis without an append-only file loses what it
held when it restarts. Run it with ``appendonly yes`` (and ``appendfsync
always`` to lose nothing even on a power cut). A Redis Cluster is not
supported (scripts derive their keys); a single server or Sentinel is.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from typing import TypeVar, cast

import redis

from .._clock import SYSTEM_CLOCK, Clock
from .._errors import BrokerUnavailable, ConfigurationError, OffloadError
from .._message import Delivery, ErrorInfo, JobInfo, Message, Outcome, State
from . import _redis_scripts as lua
from ._base import Finished, stored_error
from ._group_commit import Batcher
from ._redis_link import Link, Script, Subscription, clients, split_namespace

log = logging.getLogger(__name__)

_T = TypeVar("_T")
_B = TypeVar("_B", bound="RedisBroker")

_NAMESPACE = re.compile(r"[A-Za-z0-9_.-]{1,64}\Z")
_UNREACHABLE = (redis.ConnectionError, redis.TimeoutError)


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

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        clock: Clock = SYSTEM_CLOCK,
        result_ttl: float = 86400.0,
        reuse_window: float = 0.0,
        namespace: str | None = None,
    ) -> None:
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
        self.namespace = name
        self.prefix = f"offload:{name}:"
        self._clock = clock
        self._result_ttl = result_ttl
        self._reuse_window = reuse_window
        self._client, self._blocking = clients(url, self.BLOCK + 5.0)
        options = self._client.connection_pool.connection_kwargs
        # Never the URL itself in a log line: it may hold a password.
        address = options.get("path") or f"{options.get('host')}:{options.get('port', 6379)}"
        self._where = f"{address}/{options.get('db', 0)}"
        # The state changes go through one shared connection (see _redis_link).
        self._link = Link(self._client.connection_pool)

        def script(source: str) -> Script:
            return Script(self._link, source)

        self._enqueue, self._claim = script(lua.ENQUEUE), script(lua.CLAIM)
        self._ack, self._nack, self._extend = script(lua.ACK), script(lua.NACK), script(lua.EXTEND)
        self._cancel, self._retry = script(lua.CANCEL), script(lua.RETRY)
        self._purge, self._prune = script(lua.PURGE), script(lua.PRUNE)
        self._probe = script(lua.PROBE)
        self._claims: Batcher[tuple[tuple[str, ...], int, float], list[Delivery]]
        self._claims = Batcher(self._claim_together)
        self._acks: Batcher[list[lua.Arg], bool] = Batcher(self._ack_together)
        self._wake_self = f"{self.prefix}interrupt:{uuid.uuid4().hex}"
        # Where acks tell this object's producer that its jobs finished, while
        # it listens ("" when not: then no job carries it, nothing is sent).
        self._reply_channel = f"{self.prefix}done:{uuid.uuid4().hex}"
        self._reply_to = ""
        self._feed: Subscription | None = None
        self._lock = threading.Lock()
        self._waiting = 0
        self._down_since: float | None = None
        self._closed = threading.Event()
        self._next_prune = 0.0
        self._unread_tokens = itertools.count(1)
        # The last empty claim: when, for which queues, next due time, next lease end.
        self._idle: tuple[float, tuple[str, ...], bytes | None, bytes | None] | None = None

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

    # -- the contract ----------------------------------------------------------

    def enqueue(self, messages: Sequence[Message]) -> list[str]:
        if not messages:
            return []
        now = self._clock.now()
        args: list[lua.Arg] = [
            self.prefix,
            repr(now),
            repr(now - self._reuse_window),
            "0",
            self._reply_to,
        ]
        seen: set[str] = set()
        for message in messages:  # refuses before anything is sent
            if message.id in seen:
                raise ValueError(f"job id {message.id!r} appears twice in one enqueue")
            seen.add(message.id)
            args += lua.message_args(message, now)

        def run(again: bool) -> list[str]:
            # A retry may follow a call whose answer was lost after it ran:
            # then its ids exist, and are ours (a script runs all or nothing).
            args[3] = "1" if again else "0"
            try:
                ids = self._enqueue(args=args)
            except redis.ResponseError as error:
                if "already exists" not in str(error):
                    raise
                raise ValueError(f"a job id of this batch already exists ({error})") from None
            return [job_id.decode() for job_id in ids]

        return self._call(run)

    def claim(self, queues: Sequence[str] | None, limit: int, lease: float) -> list[Delivery]:
        if limit <= 0:
            return []
        if self._clock.now() >= self._next_prune:
            self._prune_some(self._clock.now())
        names = ("*",) if queues is None else ("", *queues)
        # A worker's threads that claim at once share one script call.
        return self._claims.submit((names, limit, lease))

    def _claim_together(
        self, calls: list[tuple[tuple[str, ...], int, float]]
    ) -> list[list[Delivery] | BaseException]:
        """One ``CLAIM`` per kind of call (queues, lease), its jobs shared out in order."""
        answers: list[list[Delivery] | BaseException] = [[] for _ in calls]
        kinds: dict[tuple[tuple[str, ...], float], list[int]] = {}
        for index, (names, _, lease) in enumerate(calls):
            kinds.setdefault((names, lease), []).append(index)
        for (names, lease), indexes in kinds.items():
            try:
                got = self._claim_some(names, sum(calls[i][1] for i in indexes), lease)
            except Exception as error:  # noqa: BLE001 - raised to each caller of this kind
                for index in indexes:
                    answers[index] = error
                continue
            for index in indexes:
                share = calls[index][1]
                answers[index], got = got[:share], got[share:]
        return answers

    def _claim_some(self, names: tuple[str, ...], limit: int, lease: float) -> list[Delivery]:
        now = self._clock.now()
        until = now + lease
        args: list[lua.Arg] = [self.prefix, repr(now), repr(until), limit, self.PROMOTE_BATCH]
        args += names
        rows = self._call(lambda _: self._claim(args=args))
        if len(rows) == lua.IDLE:  # none: what a wait would PROBE, as of now
            self._idle = (time.monotonic(), names, rows[0], rows[1])
            return []
        width = lua.CLAIMED
        return [lua.delivery(rows[i : i + width], until) for i in range(0, len(rows), width)]

    def ack(self, delivery: Delivery, outcome: Outcome) -> bool:
        # A worker's threads that finish at once share one script call.
        return self._acks.submit(self._ack_values(delivery, outcome))

    def _ack_values(self, delivery: Delivery, outcome: Outcome) -> list[lua.Arg]:
        """One ack as ``ACK`` takes it: ``ACKED`` values."""
        message = delivery.message
        error = stored_error(outcome)
        now = self._clock.now()
        ttl = self._result_ttl if message.result_ttl is None else message.result_ttl
        failed = outcome.state is State.FAILED  # the dead-letter set stays until purged
        return [
            _job_id(delivery),
            delivery.token,
            outcome.state.value,
            repr(now),
            "" if failed else repr(now + ttl),
            "1" if ttl <= 0 and not failed else "0",
            "0" if outcome.payload is None else "1",
            outcome.payload or b"",
            lua.error_text(error),
        ]

    def _ack_together(self, acks: list[list[lua.Arg]]) -> list[bool | BaseException]:
        """One ``ACK`` call for the batch; if it fails other than by an outage, one per ack.

        The script fails no ack for what a job's hash holds; what is left
        (a value that cannot be sent, say) then fails its own ack alone.
        """
        args: list[lua.Arg] = [self.prefix]
        for values in acks:
            args += values
        try:
            return [bool(stored) for stored in self._call(lambda _: self._ack(args=args))]
        except OffloadError:
            raise  # unreachable or refused: every ack of the batch alike
        except Exception:
            if len(acks) == 1:
                raise
        return [self._ack_alone(values) for values in acks]

    def _ack_alone(self, values: list[lua.Arg]) -> bool | BaseException:
        args = [self.prefix, *values]
        try:
            return bool(self._call(lambda _: self._ack(args=args))[0])
        except Exception as error:  # noqa: BLE001 - this ack's caller raises it
            return error

    def nack(
        self,
        delivery: Delivery,
        retry_at: float | None,
        *,
        error: ErrorInfo | None = None,
        penalty: bool = True,
    ) -> bool:
        args: list[lua.Arg] = [
            self.prefix,
            _job_id(delivery),
            delivery.token,
            repr(self._clock.now()),
            "" if retry_at is None else repr(retry_at),
            lua.error_text(error),
            "1" if penalty else "0",
        ]
        return bool(self._call(lambda _: self._nack(args=args)))

    def extend(self, delivery: Delivery, lease: float) -> bool:
        until = self._clock.now() + lease
        args: list[lua.Arg] = [self.prefix, _job_id(delivery), delivery.token, repr(until)]
        if not self._call(lambda _: self._extend(args=args)):
            return False
        delivery.lease_until = until
        return True

    def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        self.interrupt()
        # Closing the sockets also ends a BLPOP the interrupt could not reach.
        self.stop_listening()
        for client in (self._blocking, self._client):
            client.connection_pool.disconnect()
        self._link.close()

    def drop(self) -> int:
        """Delete every key of this namespace: all its jobs, results and queues; how many."""

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
        names = [""] if queues is None else [f":{queue}" for queue in queues]
        lists = [*(f"{self.prefix}wake{name}" for name in names), self._wake_self]
        with self._lock:
            self._waiting += 1
        try:
            while not self._closed.is_set():
                block = self._block_for(deadline - time.monotonic(), queues)
                if block < 0.001 or self._blocking.blpop(lists, min(block, self.BLOCK)):
                    return
                if block <= self.BLOCK:  # woke at a due time: something may be claimable
                    return
        except Exception as error:
            # Closing the broker closes the socket under a blocked BLPOP:
            # whatever that raises, the wait is over.
            if not isinstance(error, (redis.RedisError, OSError)) and not self._closed.is_set():
                raise
            log.debug("offload: a wait for messages ended early: %s", error)
        finally:
            with self._lock:
                self._waiting -= 1

    def _block_for(self, remaining: float, queues: Sequence[str] | None) -> float:
        """Seconds to block: 0 when something is claimable, else until the next due time."""
        names = ("*",) if queues is None else ("", *queues)
        idle, self._idle = self._idle, None
        if idle is not None and idle[1] == names and time.monotonic() - idle[0] < self.FRESH:
            # The empty claim that came just before told as much as a PROBE:
            # whatever came since pushed a wake-up token.
            due, lease_end = idle[2], idle[3]
        else:
            ready, due, lease_end = self._probe(args=[self.prefix, *names])
            if ready:
                return 0.0
        now = self._clock.now()
        for moment in (due, lease_end):
            if moment is not None:
                remaining = min(remaining, float(moment) - now)
        return remaining

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
            news = [done for data in feed.read(timeout) if (done := lua.finished(data))]
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

    def stop_listening(self) -> None:
        """Unsubscribe: enqueues stop carrying the reply channel; ends a wait at once."""
        self._reply_to = ""
        feed, self._feed = self._feed, None
        if feed is not None:
            with contextlib.suppress(redis.RedisError, OSError):
                feed.close()

    # -- inspection ------------------------------------------------------------

    # A corrupt job never makes inspection raise: see lua.job_info.

    def job(self, job_id: str) -> JobInfo | None:
        key = f"{self.prefix}job:{job_id}"
        try:
            reply = self._call(lambda _: self._link.call("HGETALL", key))
        except redis.ResponseError as error:
            if not str(error).startswith("WRONGTYPE"):
                raise
            return lua.not_a_hash(job_id)
        if not isinstance(reply, dict):  # RESP2: a flat list of names and values
            reply = dict(zip(reply[::2], reply[1::2], strict=True))
        fields = cast("dict[bytes, bytes]", reply)
        return lua.job_info(job_id, fields) if fields else None

    def job_states(self, job_ids: Sequence[str]) -> dict[str, State]:
        def run(_: bool) -> dict[str, State]:
            states: dict[str, State] = {}
            for start in range(0, len(job_ids), 1000):
                chunk = job_ids[start : start + 1000]
                pipe = self._client.pipeline(transaction=False)
                for job_id in chunk:
                    pipe.hget(f"{self.prefix}job:{job_id}", "s")
                for job_id, state in zip(chunk, pipe.execute(raise_on_error=False), strict=True):
                    if isinstance(state, bytes):
                        states[job_id] = lua.job_state(state)
                    elif isinstance(state, redis.ResponseError):  # the key holds no hash
                        states[job_id] = State.FAILED
            return states

        return self._call(run)

    def change_token(self) -> int:
        """Changes whenever a job finishes or is deleted: nothing to settle if it did not."""
        value = self._call(lambda _: self._client.get(f"{self.prefix}fin")) or 0
        try:
            return int(value)
        except ValueError:  # overwritten (the scripts start it again): a change each time
            return -next(self._unread_tokens)

    def counts(self) -> dict[str, dict[State, int]]:
        def run(_: bool) -> dict[str, dict[State, int]]:
            queues = sorted(self._queue_names())
            pipe = self._client.pipeline(transaction=False)
            pairs = [(queue, state) for queue in queues for state in State]
            for queue, state in pairs:
                pipe.zcard(self._key(f"st:{state.value}:", queue))
            counts: dict[str, dict[State, int]] = {}
            for (queue, state), count in zip(pairs, pipe.execute(), strict=True):
                if count:
                    counts.setdefault(_shown(queue), {})[state] = int(count)
            return counts

        return self._call(run)

    def jobs(
        self, state: State | None = None, queue: str | None = None, limit: int = 50
    ) -> list[JobInfo]:
        def run(_: bool) -> list[JobInfo]:
            queues = [queue.encode()] if queue is not None else self._queue_names()
            indexes = [
                self._key(f"st:{s.value}:", q)
                for q in queues
                for s in (State if state is None else (state,))
            ]
            pipe = self._client.pipeline(transaction=False)
            for index in indexes:
                pipe.zrevrange(index, 0, limit - 1, withscores=True)
            # Each index's newest, merged: newest first across them all.
            found = sorted(
                (pair for pairs in pipe.execute() for pair in pairs), key=lambda p: -p[1]
            )
            ids = list(dict.fromkeys(member for member, _ in found))[:limit]
            for job_id in ids:
                pipe.hgetall(self._key("job:", job_id))
            jobs = []
            for job_id, fields in zip(ids, pipe.execute(raise_on_error=False), strict=True):
                if isinstance(fields, redis.ResponseError):  # the key holds no hash
                    jobs.append(lua.not_a_hash(_shown(job_id)))
                elif fields:  # else gone since it was listed
                    jobs.append(lua.job_info(_shown(job_id), fields))
            return jobs

        return self._call(run)

    def cancel(self, job_id: str) -> bool:
        args = [self.prefix, job_id, repr(self._clock.now()), repr(self._result_ttl)]
        return bool(self._call(lambda _: self._cancel(args=args)))

    def retry(self, job_id: str) -> bool:
        args = [self.prefix, job_id, repr(self._clock.now())]
        return bool(self._call(lambda _: self._retry(args=args)))

    def purge(self, state: State = State.FAILED, queue: str | None = None) -> int:
        if not state.finished:
            raise ValueError(
                f"purge deletes finished jobs (succeeded, failed, cancelled), not {state}"
            )
        args: list[lua.Arg] = [self.prefix, state.value, self.PRUNE_BATCH, queue or ""]
        return self._repeat(lambda: int(self._purge(args=args)))

    def prune(self) -> int:
        args: list[lua.Arg] = [self.prefix, repr(self._clock.now()), self.PRUNE_BATCH]
        return self._repeat(lambda: int(self._prune(args=args)))

    # -- internals -------------------------------------------------------------

    def _queue_names(self) -> list[bytes]:
        """As stored: a name that is not UTF-8 (a corrupt job retried) still finds its keys."""
        return list(cast("set[bytes]", self._client.smembers(f"{self.prefix}queues")))

    def _key(self, kind: str, name: bytes) -> bytes:
        return f"{self.prefix}{kind}".encode() + name

    def _repeat(self, step: Callable[[], int]) -> int:
        """Run a deleting script in batches until a batch falls short; how many in all."""
        total = 0
        while (deleted := self._call(lambda _: step())) > 0:
            total += deleted
        return total

    def _prune_some(self, now: float) -> None:
        self._next_prune = now + self.PRUNE_EVERY
        args: list[lua.Arg] = [self.prefix, repr(now), self.PRUNE_BATCH]
        if self._call(lambda _: int(self._prune(args=args))) >= self.PRUNE_BATCH:
            self._next_prune = now  # more are due: carry on at the next claim

    def _call(self, operation: Callable[[bool], _T]) -> _T:
        """Run ``operation`` (told whether it is a retry), retrying a lost connection.

        3 tries over about a second, then ``BrokerUnavailable``: a producer
        never hangs, and never hears of success for a message not stored.
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
                self._lost(error)
                continue
            if self._down_since is not None:
                self._found()
            return result
        raise BrokerUnavailable(
            f"Redis at {self._where} is unreachable after {len(self.BACKOFF) + 1} tries over "
            f"{sum(self.BACKOFF):g} s ({failure}); check that the server runs and that this "
            "host can reach it. A call cut off mid-way may still have taken effect: give "
            "messages a key to make retrying an enqueue safe."
        ) from failure

    def _lost(self, error: Exception) -> None:
        """Log once per outage, not once per failed call."""
        with self._lock:
            first = self._down_since is None
            if first:
                self._down_since = time.monotonic()
        if first:
            log.warning("offload: lost the connection to Redis at %s (%s)", self._where, error)

    def _found(self) -> None:
        with self._lock:
            since, self._down_since = self._down_since, None
        if since is not None:
            log.warning(
                "offload: reconnected to Redis at %s after %.1f s",
                self._where,
                time.monotonic() - since,
            )


def _job_id(delivery: Delivery) -> str | bytes:
    """A delivery's job id as the scripts take it.

    A defect's id may have come from a key that is not UTF-8 (kept whole
    with surrogates by ``lua.delivery``): it goes back as the same bytes.
    """
    job_id = delivery.message.id
    return job_id if delivery.defect is None else job_id.encode("utf-8", "surrogateescape")


def _shown(name: bytes) -> str:
    return name.decode("utf-8", "backslashreplace")
