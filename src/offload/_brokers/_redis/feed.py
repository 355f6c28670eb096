"""A producer's reply channel: what acks publish for its jobs (``RedisBroker.wait_for_results``).

``Subscription`` is a connection of its own, subscribed to one channel. It
reads the socket itself and parses with hiredis: one ``recv`` takes every
message that has come, where redis-py's ``PubSub`` (or its connection's
``can_read``, three system calls each) costs a round of work per message;
a producer that listens while thousands of jobs finish reads them all.

A read waits on the connection and on a socket pair, so ``interrupt()``
from another thread ends it at once without unsubscribing: nothing
published meanwhile is lost. That is what lets a thread blocked on one
result read the channel itself instead of waiting for the result watcher
to hop the news over (``ResultWatcher.wait``).
"""

from __future__ import annotations

import contextlib
import select
import socket
import ssl
import time
from typing import Any

import redis

from .link import _RESP3, _hiredis  # RESP3 pushes are how messages come on RESP3

_AGAIN = (BlockingIOError, InterruptedError, ssl.SSLWantReadError, ssl.SSLWantWriteError)
_CHUNK = 65536


class Subscription:
    """A connection subscribed to one channel; read by one thread at a time, interrupted by any."""

    def __init__(self, pool: redis.ConnectionPool, channel: str) -> None:
        self._pool = pool
        self._channel = channel
        self._connection: Any = None
        self._sock: Any = None  # set when the socket is read here (hiredis, RESP2)
        self._reader: Any = None
        self._wake_in, self._wake_out = socket.socketpair()
        self._wake_in.setblocking(False)
        self._wake_out.setblocking(False)

    def read(self, timeout: float) -> list[bytes]:
        """What was published, waiting up to ``timeout`` for the first message
        (or until ``interrupt()``)."""
        if self._connection is None:
            self._subscribe()
        if self._sock is None:
            return self._read_parsed(timeout)
        data: list[bytes] = []
        self._receive(data)
        deadline = time.monotonic() + timeout
        while not data and self._sock is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            interrupted = self._wait(remaining)
            self._receive(data)
            if interrupted:
                break
        return data

    def interrupt(self) -> None:
        """End a ``read`` blocked in another thread now (or the next one, if none is)."""
        with contextlib.suppress(OSError):  # full (a wake-up is pending anyway) or closed
            self._wake_out.send(b"\0")

    def close(self) -> None:
        """Close the connection: a ``read`` blocked in another thread ends at once."""
        connection, self._connection = self._connection, None
        self._sock = None
        self.interrupt()
        if connection is not None:
            connection.disconnect()
        self._wake_in.close()
        self._wake_out.close()

    # -- internals ---------------------------------------------------------------

    def _subscribe(self) -> None:
        pool = self._pool
        connection = pool.connection_class(**pool.connection_kwargs)
        connection.connect()
        resp3 = str(getattr(connection, "protocol", 2)) == "3"
        if _hiredis is None or (resp3 and not _RESP3):
            connection.send_command("SUBSCRIBE", self._channel)
            connection.read_response(push_request=True)  # the confirmation
            self._connection = connection
            return
        sock = connection._sock
        sock.sendall(_hiredis.pack_command(("SUBSCRIBE", self._channel)))
        reader = _hiredis.Reader()
        while (reply := reader.gets()) is False:  # the confirmation, in the socket's timeout
            chunk = sock.recv(_CHUNK)
            if not chunk:
                raise redis.ConnectionError("the server closed the subscription")
            reader.feed(chunk)
        if isinstance(reply, Exception):
            raise redis.ResponseError(str(reply))
        sock.setblocking(False)  # from now on, waits are polls (on the wake-up socket too)
        self._connection, self._sock, self._reader = connection, sock, reader

    def _receive(self, data: list[bytes]) -> None:
        """Take what the socket holds now, without blocking; append the messages' data."""
        sock, reader = self._sock, self._reader
        if sock is None:  # closed under us
            return
        while True:
            try:
                chunk = sock.recv(_CHUNK)
            except _AGAIN:
                break
            except OSError as error:
                raise redis.ConnectionError(f"the subscription was cut: {error}") from error
            if not chunk:
                raise redis.ConnectionError("the server closed the subscription")
            reader.feed(chunk)
            if len(chunk) < _CHUNK:
                break
        while (reply := reader.gets()) is not False:
            if isinstance(reply, list) and len(reply) == 3 and reply[0] == b"message":
                data.append(reply[2])

    def _wait(self, timeout: float) -> bool:
        """Wait until the socket is readable or ``interrupt()``; True if interrupted."""
        wake, sock = self._wake_in, self._sock
        if sock is None:  # closed under us
            return True
        if isinstance(sock, ssl.SSLSocket) and sock.pending():
            return False
        try:
            if hasattr(select, "poll"):
                poller = select.poll()
                poller.register(sock, select.POLLIN)
                poller.register(wake, select.POLLIN)
                ready = [fd for fd, _ in poller.poll(timeout * 1000)]
            else:  # pragma: no cover - Windows
                ready = [s.fileno() for s in select.select([sock, wake], [], [], timeout)[0]]
        except (OSError, ValueError):  # a socket closed under us
            return True
        if wake.fileno() not in ready:
            return False
        try:
            while wake.recv(_CHUNK):
                pass
        except OSError:  # drained (or closed by close())
            pass
        return True

    def _read_parsed(self, timeout: float) -> list[bytes]:
        """``read`` through redis-py's parser (no hiredis, or RESP3 with hiredis 2); not
        interruptible."""
        connection = self._connection
        data: list[bytes] = []
        ready = connection.can_read(timeout)
        while ready:
            # RESP3 delivers messages as pushes, which only push_request returns.
            reply = connection.read_response(push_request=True)
            if reply[0] == b"message":
                data.append(reply[2])
            ready = connection.can_read(0)
        return data
