"""Connections of the PostgreSQL broker: one for its statements, one for LISTEN.

``Link`` is one autocommit connection guarded by a lock (psycopg_pool is
not a dependency; a broker's statements are short, and one connection per
process keeps a cluster of workers far under ``max_connections``). A
statement that fails because the connection broke is retried on a new
connection with exponential backoff, for a bounded time; then the caller
gets ``BrokerUnavailable``. Nothing hangs: connecting has a timeout,
statements have ``statement_timeout``, and TCP keepalives notice a server
that vanished without closing the socket.

``Listener`` owns a LISTEN connection on one channel. One waiting thread at
a time reads it (``select`` on its socket and on a pipe, so ``interrupt``
wakes it at once); other waiting threads sleep on a condition that the
reader signals. A broker has two, each connecting only once it is used:
the wake-ups of its workers (``wait``, on the namespace's channel), and the
result feed of its producer (``heard``, on the producer's reply channel).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import select
import threading
import time
from collections.abc import Callable, Collection
from typing import Any, TypeVar

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from ..._errors import BrokerUnavailable

log = logging.getLogger(__name__)

T = TypeVar("T")
Connection = psycopg.Connection[Any]

# Retried at once, on the same connection: another transaction won a race.
_TRANSIENT = frozenset({"40001", "40P01"})  # serialization failure, deadlock detected


def conninfo(url: str, connect_timeout: float) -> str:
    """``url`` with offload's defaults for what it does not set itself."""
    given = conninfo_to_dict(url)
    defaults: dict[str, Any] = {
        "connect_timeout": max(2, round(connect_timeout)),  # libpq counts whole seconds
        "application_name": "offload",
        # A server that vanished without closing the socket is noticed in
        # about 30 s instead of the kernel's two hours.
        "keepalives": 1,
        "keepalives_idle": 15,
        "keepalives_interval": 5,
        "keepalives_count": 3,
    }
    return make_conninfo(url, **{k: v for k, v in defaults.items() if k not in given})


def describe(url: str) -> str:
    """Where ``url`` points, without its password: ``host:port/db``."""
    try:
        info = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "PostgreSQL (unparsable URL)"
    host = info.get("host") or "localhost"
    return f"PostgreSQL at {host}:{info.get('port') or 5432}/{info.get('dbname') or ''}"


_QUOTED = re.compile(r'"([^"]*)"')


class Secrets:
    """The password of a connection string, and ``scrub`` to keep it out of a text.

    ``scrub``: the password as parsed (and as written in a URL) goes, in any
    error of a connection. ``scrub_unparsed``: for an error about a string
    libpq could not parse, which may quote a piece of it (``missing "=" after
    "cret"``, ``invalid percent-encoded token: "..."``): every quoted piece of
    what follows a ``password=`` or sits in a URL's ``user:password@`` goes too.
    """

    __slots__ = ("_regions", "_whole")

    def __init__(self, url: str) -> None:
        lowered = url.lower()
        # Everything after each password= (a key=value string, ?password=, sslpassword=).
        regions = [url[at + 9 :] for at in _all(lowered, "password=")]
        _, separator, rest = url.partition("://")
        if separator:
            userinfo, at, _host = rest.rpartition("@")
            if at and ":" in userinfo:
                password = userinfo.partition(":")[2]
                regions.append(password)
        whole = {re.split(r"[\s&]", region.strip())[0] for region in regions}
        with contextlib.suppress(psycopg.Error):
            parsed = conninfo_to_dict(url)
            whole |= {str(parsed[k]) for k in ("password", "sslpassword") if parsed.get(k)}
        whole |= {text.strip("'\"") for text in whole}
        self._regions = tuple(region for region in regions if region)
        # Longest first; not so short that hiding it would mangle the text.
        self._whole = tuple(sorted((w for w in whole if len(w) >= 3), key=len, reverse=True))

    def scrub(self, text: str) -> str:
        """``text`` without the password."""
        for secret in self._whole:
            text = text.replace(secret, "***")
        return text

    def scrub_unparsed(self, text: str) -> str:
        """``text``, an error about the unparsable string, without any quoted piece of it."""
        return _QUOTED.sub(self._quoted, self.scrub(text)) if self._regions else text

    def _quoted(self, match: re.Match[str]) -> str:
        piece = match.group(1)
        if piece and any(piece in region for region in self._regions):
            return '"***"'
        return match.group(0)

    def __repr__(self) -> str:
        return "Secrets(***)"


def _all(text: str, word: str) -> list[int]:
    found, at = [], text.find(word)
    while at != -1:
        found.append(at)
        at = text.find(word, at + 1)
    return found


def connect(info: str, statement_timeout: float) -> Connection:
    connection = psycopg.connect(info, autocommit=True)
    connection.execute(f"SET statement_timeout = {int(statement_timeout * 1000)}")
    return connection


class Link:
    """One connection, lock-guarded, reconnected with bounded retries."""

    FIRST_DELAY = 0.05
    MAX_DELAY = 2.0
    MAX_RACES = 5  # a deadlock or serialization failure is retried at most this often

    def __init__(
        self,
        open_connection: Callable[[], Connection],
        where: str,
        *,
        retry_for: float,
        closing: threading.Event,
        scrub: Callable[[str], str] = str,
    ) -> None:
        self._open = open_connection
        self._where = where
        self._scrub = scrub  # keeps the password out of what is logged or raised
        self._retry_for = retry_for
        self._closing = closing
        self._lock = threading.Lock()
        self._connection: Connection | None = None
        self._outage = False

    def twin(self) -> Link:
        """Another link to the same server, with a connection of its own."""
        return Link(
            self._open,
            self._where,
            retry_for=self._retry_for,
            closing=self._closing,
            scrub=self._scrub,
        )

    def run(self, work: Callable[[Connection], T]) -> T:
        """``work(connection)`` under the lock; retried on a new connection if it broke.

        ``work`` must be safe to run again after a failure whose outcome is
        unknown (the server may have committed before the connection broke).
        """
        delay = self.FIRST_DELAY
        deadline: float | None = None
        races = 0
        with self._lock:
            while True:
                try:
                    result = work(self._connected())
                except psycopg.Error as error:
                    if error.sqlstate in _TRANSIENT and races < self.MAX_RACES:
                        races += 1
                        continue
                    if not self._is_lost(error):
                        raise
                    deadline = deadline or time.monotonic() + self._retry_for
                    self._lose(error)
                    if time.monotonic() + delay > deadline or self._closing.is_set():
                        unavailable = self._unavailable(error)
                        # The driver's error as the cause, unless it told the password.
                        clean = self._scrub(str(error)) == str(error)
                        raise unavailable from (error if clean else None)
                    self._closing.wait(delay)
                    delay = min(delay * 2, self.MAX_DELAY)
                    continue
                if self._outage:
                    self._outage = False
                    log.info("offload: reconnected to %s", self._where)
                return result

    def close(self) -> None:
        with self._lock:
            if self._connection is not None:
                self._connection.close()
                self._connection = None

    def _connected(self) -> Connection:
        connection = self._connection
        if connection is None or connection.closed:
            if self._closing.is_set():
                raise BrokerUnavailable(f"the broker for {self._where} is closed")
            connection = self._connection = self._open()
        return connection

    def _is_lost(self, error: psycopg.Error) -> bool:
        if not isinstance(error, (psycopg.OperationalError, psycopg.InterfaceError)):
            return False
        connection = self._connection
        return connection is None or connection.closed

    def _lose(self, error: psycopg.Error) -> None:
        if not self._outage:
            self._outage = True  # logged once per outage, not once per retry
            log.warning(
                "offload: lost the connection to %s (%s); reconnecting",
                self._where,
                self._scrub(str(error)),
            )
        if self._connection is not None:
            with contextlib.suppress(psycopg.Error):
                self._connection.close()
            self._connection = None

    def _unavailable(self, error: psycopg.Error) -> BrokerUnavailable:
        if self._closing.is_set():
            return BrokerUnavailable(f"the broker for {self._where} is closed")
        return BrokerUnavailable(
            f"cannot reach {self._where} after retrying for {self._retry_for:g}s "
            f"({self._scrub(str(error))}). "
            "Check that the server is running and reachable from here. Nothing of the call "
            "that raised this was stored, unless the connection broke while it committed: "
            "messages with a key are safe to enqueue again."
        )


class Listener:
    """A LISTEN connection on one channel, and the waits that read it.

    ``wait``: until a notification names one of the caller's queues (the
    wake-ups of ``wait_for_messages``). ``heard``: the payloads of the
    notifications that came (a result feed's news). A lost connection is
    opened again by the next wait, at most once per ``RETRY_AFTER``; what
    was sent meanwhile is missed, as notifications are (callers poll too).
    """

    RETRY_AFTER = 1.0  # seconds between attempts to LISTEN again after a failure

    def __init__(
        self,
        open_connection: Callable[[], Connection],
        listen: str,
        scrub: Callable[[str], str] = str,
    ) -> None:
        self._open = open_connection
        self._listen = listen  # the LISTEN statement of the broker's channel
        self._scrub = scrub
        self._connection: Connection | None = None
        self._reading = threading.Lock()  # one thread reads the connection at a time
        self._changed = threading.Condition()
        self._events = 0  # notifications seen and interrupts: what other waiters watch
        self._interrupts = 0
        self._closed = False
        self._retry_at = 0.0  # no new LISTEN connection before this (time.monotonic)
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)

    def mark(self) -> tuple[int, int]:
        """Where the counters are: a wait returns once they move past this."""
        with self._changed:
            return self._events, self._interrupts

    def listen(self) -> bool:
        """Connect and LISTEN, if not yet; ``False`` when the server cannot be reached.

        Called before the caller looks for due messages: what commits after
        LISTEN is notified, what committed before is found by that look.
        """
        if not self._reading.acquire(blocking=False):
            return True  # another thread reads the connection: it is listening
        try:
            return self._listening() is not None
        finally:
            self._reading.release()

    def look(self, query: Callable[[Connection], T]) -> tuple[bool, T | None]:
        """Listen (as ``listen``), and run ``query`` on the listening connection.

        ``(False, None)``: not listening (the server cannot be reached).
        ``(True, None)``: another thread reads the connection, so it listens,
        and the caller runs its query elsewhere. The listening connection is
        idle while nobody waits: a look there (a worker's, before it waits)
        leaves the broker's own connection to the acks of the calls it just
        handed over. A notification that comes during the query is kept by
        the connection for the next read.
        """
        if not self._reading.acquire(blocking=False):
            return True, None
        try:
            connection = self._listening()
            if connection is None:
                return False, None
            try:
                return True, query(connection)
            except psycopg.Error:
                self._drop()  # the next wait listens again; the caller claims meanwhile
                return False, None
        finally:
            self._reading.release()

    def wait(self, seconds: float, queues: Collection[str] | None, mark: tuple[int, int]) -> None:
        """Until a notification for ``queues`` (any for None), an interrupt, or ``seconds``."""

        def enough(payloads: list[str]) -> bool:
            return queues is None or any(payload in queues for payload in payloads)

        self._wait(seconds, enough, mark)

    def heard(self, seconds: float, mark: tuple[int, int]) -> list[str]:
        """The payloads of the notifications that come, waiting up to ``seconds`` for the first.

        ``[]`` after an interrupt (since ``mark``) or the timeout. For one
        thread at a time: a second one would return on the first one's news,
        without it.
        """
        heard: list[str] = []

        def enough(payloads: list[str]) -> bool:
            heard.extend(payloads)
            return True

        self._wait(seconds, enough, mark)
        return heard

    def hang_up(self) -> None:
        """Interrupt the waits and close the connection (stop listening); the next one listens."""
        self.interrupt()
        # The reader returns at once (the pipe woke it); then the connection is ours.
        if self._reading.acquire(timeout=5):
            try:
                self._drop()
            finally:
                self._reading.release()

    def _wait(
        self, seconds: float, enough: Callable[[list[str]], bool], mark: tuple[int, int]
    ) -> None:
        end = time.monotonic() + seconds
        while (remaining := end - time.monotonic()) > 0 and not self._closed:
            if self._reading.acquire(blocking=False):
                try:
                    self._read(end, enough, mark[1])
                finally:
                    self._reading.release()
                    with self._changed:  # another waiter may take over the reading
                        self._changed.notify_all()
                return
            with self._changed:
                if (self._events, self._interrupts) != mark or self._closed:
                    return
                self._changed.wait(remaining)
                if (self._events, self._interrupts) != mark:
                    return

    def interrupt(self) -> None:
        with self._changed:
            self._interrupts += 1
            self._events += 1
            self._changed.notify_all()
            if self._wake_w >= 0:  # under the condition: close() cannot free the fd meanwhile
                with contextlib.suppress(OSError):  # a full pipe: a wake-up is pending anyway
                    os.write(self._wake_w, b"!")

    def close(self) -> None:
        with self._changed:
            if self._closed:
                return
            self._closed = True
        self.interrupt()
        # The reader returns at once (the pipe woke it); then the connection is ours.
        if self._reading.acquire(timeout=5):
            try:
                if self._connection is not None:
                    self._connection.close()
                    self._connection = None
            finally:
                with self._changed:
                    os.close(self._wake_r)
                    os.close(self._wake_w)
                    self._wake_r = self._wake_w = -1
                self._reading.release()

    # -- the reading thread (self._reading held) ------------------------------------

    def _listening(self) -> Connection | None:
        if self._connection is not None and not self._connection.closed:
            return self._connection
        self._connection = None
        if self._closed or time.monotonic() < self._retry_at:
            return None
        try:
            connection = self._open()
            connection.execute(self._listen)
        except psycopg.Error as error:
            # Polling meanwhile; not a connection attempt per wait (each may
            # take connect_timeout when the server is unreachable).
            self._retry_at = time.monotonic() + self.RETRY_AFTER
            log.debug("offload: cannot LISTEN (%s); polling instead", self._scrub(str(error)))
            return None
        self._connection = connection
        return connection

    def _read(self, end: float, enough: Callable[[list[str]], bool], interrupts: int) -> None:
        with self._changed:
            if self._interrupts != interrupts or self._closed:
                return  # before connecting: hang_up() may have come first
        connection = self._listening()
        while True:
            self._clear_pipe()
            with self._changed:
                if self._interrupts != interrupts or self._closed:
                    return
            if connection is not None:
                try:
                    payloads = [n.payload for n in connection.notifies(timeout=0)]
                except psycopg.Error:
                    # Gone: return, so the caller claims or polls (and reconnects) now.
                    self._drop()
                    return
                if payloads:
                    self._seen()
                    if enough(payloads):
                        return
            remaining = end - time.monotonic()
            if remaining <= 0:
                return
            # Without a LISTEN connection this is the poll fallback: a timed
            # sleep that only interrupt() shortens; the caller then claims.
            fds = [self._wake_r] if connection is None else [self._wake_r, connection.fileno()]
            select.select(fds, [], [], remaining)

    def _seen(self) -> None:
        with self._changed:
            self._events += 1
            self._changed.notify_all()

    def _clear_pipe(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while os.read(self._wake_r, 4096):
                pass

    def _drop(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(psycopg.Error):
                self._connection.close()
            self._connection = None
