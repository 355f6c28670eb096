"""The Redis broker's connections: one socket for commands that a process's threads share.

redis-py's ``execute_command`` path (pool checkout, retry wrapper, command
parsing, observability hooks) costs more than the server takes to run a
whole enqueue script. ``Link`` lets redis-py open a connection of its own
(TLS, AUTH, HELLO, SELECT), then writes pre-packed commands to its socket
and parses the replies with a hiredis reader of its own, so a call costs
little more than its round trip's two system calls. (Without hiredis, or
RESP3 with hiredis 2, it goes through redis-py's connection methods.)

It is also group commit on the client: commands that threads submit while
a round trip is in flight go out together as one pipeline in the next one
(one ``send``, replies read in order). A lone call goes out at once, so
batching adds no latency; eight worker threads acking together cost one
round trip instead of eight. Each caller still gets only its own reply, or
its own error, once the server has answered it: nothing is weakened.

A broken connection fails every command of the round trip that was in
flight (the caller retries, as before, through ``RedisBroker._call``); the
next call reconnects.

The group commit is ``combine.Combiner``, also used one level up (a
worker's acks become one ``ACK`` script call); ``clients`` makes redis-py's
clients for everything else; ``Downtime`` logs an outage once, however many
calls meet it. (A producer's reply channel is read by ``feed.Subscription``.)
"""

from __future__ import annotations

import hashlib
import inspect
import logging
import socket
import struct
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from ..._errors import ConfigurationError
from .combine import Combiner

log = logging.getLogger(__name__)

Arg = bytes | str | int | float
"""What a command or a script takes."""

Command = tuple[Arg, ...] | bytes
"""A command as its words, or packed already (``packed``: the protocol's bytes)."""

_LENGTHS = tuple(b"$%d" % n for n in range(256))


def packed(values: list[bytes]) -> bytes:
    """``values`` as the protocol sends a command's words (bulk strings), one after another.

    For a hot command whose head is packed once: hiredis's packer formats
    every word's length with ``sprintf``, which cost more than the rest of
    an enqueue's Python. (Each word is its length line and itself, every
    line ended by CRLF: one join.)
    """
    lines: list[bytes] = []
    for value in values:
        n = len(value)
        lines.append(_LENGTHS[n] if n < 256 else b"$%d" % n)
        lines.append(value)
    lines.append(b"")
    return b"\r\n".join(lines)


_pack: Callable[[tuple[Arg, ...]], bytes] | None
_hiredis: Any
try:  # offload[redis] installs it; redis-py works without it
    import hiredis as _hiredis

    _pack = _hiredis.pack_command
except ImportError:  # pragma: no cover - the extra always has it
    _hiredis = _pack = None

_GET_CONNECTION = inspect.signature(redis.ConnectionPool.get_connection).parameters
_POOL_WANTS_COMMAND = (
    "command_name" in _GET_CONNECTION
    and _GET_CONNECTION["command_name"].default is inspect.Parameter.empty
)
"""redis-py 5.0 asks ``get_connection`` for a command name; later versions make it
optional, then deprecate it."""

_RESP3 = _hiredis is not None and int(_hiredis.__version__.split(".")[0]) >= 3
"""hiredis parses RESP3 (what redis-py 8 speaks by default) from version 3 on."""
_MORE = object()  # the reader's answer while a reply is incomplete (False is a RESP3 reply)
_CHUNK = 65536


class Link:
    """One connection, shared by threads; commands that meet share a round trip."""

    def __init__(self, pool: redis.ConnectionPool) -> None:
        self._pool = pool
        self._connection: Any = None
        # With hiredis, the socket is written and read here, parsed by a
        # reader of our own: redis-py's send and read layers cost as much
        # again as the round trip's own system calls.
        self._sock: Any = None
        self._reader: Any = None
        self._commands: Combiner[Command, Any] = Combiner(self._round_trip)

    def call(self, *command: Arg) -> Any:
        """Send one command and return its reply (raising its error, if any)."""
        return self._commands.submit(command)

    def call_packed(self, command: bytes) -> Any:
        """``call`` for a command packed already (the protocol's bytes: ``packed``)."""
        return self._commands.submit(command)

    def exchange(self, commands: list[Command]) -> list[Any]:
        """Send ``commands`` in one write and read a reply for each, not combined with other
        threads' calls: for a link one thread at a time uses (``WaitLink``). An error
        reply, or the failure that cut the exchange, is its command's reply, not raised."""
        return self._round_trip(commands)

    def close(self) -> None:
        """Close the socket; a later call would open a new one."""
        connection = self._connection
        if connection is not None:
            connection.disconnect()

    def _round_trip(self, batch: list[Command]) -> list[Any]:
        replies: list[Any] = []
        try:
            connection = self._connected()
            if self._reader is not None:
                self._exchange(batch, replies)
                return replies
            words: list[bytes] = []
            for command in batch:
                if isinstance(command, bytes):
                    words.append(command)
                else:
                    words += connection.pack_command(*command)
            connection.send_packed_command(words, check_health=False)
            for _ in batch:
                try:
                    replies.append(connection.read_response())
                except redis.ResponseError as error:  # this command's own error
                    replies.append(error)
        except BaseException as error:  # noqa: BLE001 - each caller of the batch re-raises it
            # Replies still unread would answer the wrong commands: start over.
            self._drop()
            replies += [error] * (len(batch) - len(replies))
        return replies

    def _exchange(self, batch: list[Command], replies: list[Any]) -> None:
        """Send ``batch`` and read a reply per command (an error reply is its exception)."""
        assert _pack is not None  # a reader of our own only with hiredis
        sock, reader = self._sock, self._reader
        try:
            if len(batch) == 1:
                first = batch[0]
                sock.sendall(first if isinstance(first, bytes) else _pack(first))
            else:
                sock.sendall(b"".join(c if isinstance(c, bytes) else _pack(c) for c in batch))
            for _ in batch:
                while (reply := reader.gets()) is _MORE:
                    chunk = sock.recv(_CHUNK)
                    if not chunk:
                        raise redis.ConnectionError("Connection closed by server.")
                    reader.feed(chunk)
                replies.append(reply)
        except (TimeoutError, BlockingIOError) as error:  # the socket's timeout (see _own)
            raise redis.TimeoutError("Timeout talking to Redis") from error
        except redis.RedisError:
            raise
        except OSError as error:
            raise redis.ConnectionError(f"Error while talking to Redis: {error}") from error

    def _connected(self) -> Any:
        connection = self._connection
        if connection is None:
            pool = self._pool
            connection = pool.connection_class(**pool.connection_kwargs)
            connection.connect()  # redis-py's handshake: TLS, AUTH, HELLO, SELECT
            if _hiredis is not None and (_RESP3 or str(connection.protocol) != "3"):
                self._sock = _own(connection._sock)
                self._reader = _hiredis.Reader(
                    protocolError=redis.InvalidResponse,
                    replyError=connection._parser.parse_error,
                    notEnoughData=_MORE,
                )
            self._connection = connection
        return connection

    def _drop(self) -> None:
        connection, self._connection = self._connection, None
        self._sock = self._reader = None
        if connection is not None:
            connection.disconnect()


def _own(sock: socket.socket) -> socket.socket:
    """``sock`` (ours alone from now on) with its timeout kept by the kernel, on Linux.

    Python keeps a socket's timeout with a ``poll()`` before every send and
    every receive: four system calls per round trip instead of two. A
    blocking socket with ``SO_SNDTIMEO`` and ``SO_RCVTIMEO`` times out all
    the same (``BlockingIOError``, which ``_exchange`` reports as a timeout).
    A TLS socket (its own errors), or one without a timeout, stays as it is.
    """
    timeout = sock.gettimeout()
    if not timeout or type(sock) is not socket.socket or not sys.platform.startswith("linux"):
        return sock
    whole = int(timeout)
    limit = struct.pack("ll", whole, max(1, int((timeout - whole) * 1e6)))  # 0 0: no limit
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, limit)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, limit)
    sock.settimeout(None)
    return sock


class Script:
    """A Lua script run by ``EVALSHA`` on a link, loaded again if the server forgot it."""

    def __init__(self, link: Link, source: str) -> None:
        self._link = link
        self._source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()
        self._heads: dict[int, bytes] = {}

    def __call__(self, args: list[Any]) -> Any:
        try:
            return self._link.call("EVALSHA", self.sha, 0, *args)
        except redis.exceptions.NoScriptError:
            # A restarted (or flushed) server: load it and run it once more.
            self._link.call("SCRIPT", "LOAD", self._source)
            return self._link.call("EVALSHA", self.sha, 0, *args)

    def packed(self, count: int, args: bytes) -> Any:
        """Run it with ``count`` arguments, ``args`` packed already (``packed``)."""
        head = self._heads.get(count)
        if head is None:
            head = b"*%d\r\n" % (count + 3) + packed([b"EVALSHA", self.sha.encode(), b"0"])
            self._heads[count] = head
        try:
            return self._link.call_packed(head + args)
        except redis.exceptions.NoScriptError:
            self._link.call("SCRIPT", "LOAD", self._source)
            return self._link.call_packed(head + args)


def blocked_then(
    pool: redis.ConnectionPool, blocking: tuple[Arg, ...], then: tuple[Arg, ...]
) -> tuple[Any, Any]:
    """Send a blocking command and another together, on a connection of ``pool``;
    both replies (the second's error reply as its exception, not raised).

    Redis runs a command that comes after a blocked one on the same
    connection the moment the block ends: the second command needs no round
    trip of its own (``RedisBroker.wait_and_claim``: a claim after a wait).
    """
    connection: Any = pool.get_connection("BLPOP") if _POOL_WANTS_COMMAND else pool.get_connection()
    try:
        if _pack is not None:
            packed = [_pack(blocking) + _pack(then)]
        else:  # pragma: no cover - the extra always has hiredis
            packed = connection.pack_commands([blocking, then])
        connection.send_packed_command(packed, check_health=False)
        first = connection.read_response()
        try:
            second = connection.read_response()
        except redis.ResponseError as error:  # read whole: the connection is still in step
            second = error
    except BaseException:
        connection.disconnect()  # a reply may be left unread: never reuse the socket
        raise
    finally:
        pool.release(connection)
    return first, second


class WaitLink:
    """The connection a broker object's waits use (a ``BLPOP`` and the claim behind it),
    kept between waits and read as ``Link`` reads.

    Taking a connection from redis-py's pool, giving it back and reading the
    replies through redis-py cost about 30 µs of Python per wait, and a
    woken worker's claim waits on them before its job starts. One thread at
    a time waits here; another one waiting at the same moment takes a pool
    connection (``blocked_then``), as every wait did before.
    """

    def __init__(self, pool: redis.ConnectionPool) -> None:
        self._pool = pool
        self._link = Link(pool)
        self._busy = threading.Lock()

    def blocked_then(self, blocking: tuple[Arg, ...], then: tuple[Arg, ...]) -> tuple[Any, Any]:
        """``blocked_then`` on the kept connection, if no other thread waits on it."""
        if not self._busy.acquire(blocking=False):
            return blocked_then(self._pool, blocking, then)
        try:
            first, second = self._link.exchange([blocking, then])
        finally:
            self._busy.release()
        # What cut the exchange comes back as both replies (the first as its own
        # if read whole): raised, as a read on a pool connection raises it. An
        # interrupt (KeyboardInterrupt, SystemExit) is raised whichever read it cut.
        for reply in (first, second):
            if isinstance(reply, BaseException) and not isinstance(reply, Exception):
                raise reply
        if isinstance(first, BaseException):
            raise first
        return first, second

    def close(self) -> None:
        """Close the kept connection: a wait blocked on it ends (a later one reconnects)."""
        self._link.close()


def split_namespace(url: str) -> tuple[str, str | None]:
    """``url`` without its ``namespace=`` query option (redis-py knows no such option)."""
    parts = urllib.parse.urlsplit(url)
    options = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    namespaces = [value for name, value in options if name == "namespace"]
    if not namespaces:
        return url, None
    rest = urllib.parse.urlencode([(name, value) for name, value in options if name != "namespace"])
    return urllib.parse.urlunsplit(parts._replace(query=rest)), namespaces[-1]


def clients(url: str, blocking_timeout: float) -> tuple[redis.Redis, redis.Redis]:
    """A client for commands, and one with its own pool for blocking waits.

    The waits never take a connection that a command needs, and their
    socket timeout outlasts the longest BLPOP. Retries are ours
    (``RedisBroker._call``): redis-py's own would repeat a script blindly.
    """
    try:
        client = redis.Redis.from_url(
            url,
            socket_timeout=5.0,
            socket_connect_timeout=2.0,
            retry=Retry(NoBackoff(), 0),
            # redis-py's default (100) would fail a busy worker's calls as if the
            # server were down; connections are only opened when needed.
            max_connections=1000,
        )
    except ValueError as error:
        # The parser's words may quote a piece of the password (one with a
        # '/' or '#' cuts the URL short there): not when the URL has one.
        secret = "@" in url or "password" in url.lower()
        why = (
            "check the host, port and database, and percent-encode any of : / ? # @ % in "
            "the password; the parser's own words are left out, they may quote it"
            if secret
            else error
        )
        raise ConfigurationError(
            f"not a Redis URL ({why}): write redis://[[user]:password@]host:6379/0 "
            "or rediss:// for TLS"
        ) from None
    pool = client.connection_pool
    options = {**pool.connection_kwargs, "socket_timeout": blocking_timeout}
    blocking_pool = redis.ConnectionPool(
        connection_class=pool.connection_class, max_connections=pool.max_connections, **options
    )
    return client, redis.Redis(connection_pool=blocking_pool)


class Downtime:
    """Logs losing a server once per outage, and finding it again, not once per failed call."""

    def __init__(self, where: str) -> None:
        self._where = where
        self._lock = threading.Lock()
        self._since: float | None = None

    def lost(self, error: Exception) -> None:
        with self._lock:
            first = self._since is None
            if first:
                self._since = time.monotonic()
        if first:
            log.warning("offload: lost the connection to Redis at %s (%s)", self._where, error)

    def found(self) -> None:
        if self._since is None:  # the usual case, without the lock
            return
        with self._lock:
            since, self._since = self._since, None
        if since is not None:
            log.warning(
                "offload: reconnected to Redis at %s after %.1f s",
                self._where,
                time.monotonic() - since,
            )
