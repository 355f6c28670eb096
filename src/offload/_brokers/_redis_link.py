"""The Redis broker's command connection: one socket that a process's threads share.

redis-py's ``execute_command`` path (pool checkout, retry wrapper, command
parsing, observability hooks) costs more than the server takes to run a
whole enqueue script. ``Link`` sends pre-packed commands on one connection
of its own and reads the replies with redis-py's parser (hiredis when
installed), so a call costs little more than its round trip.

It is also group commit on the client: commands that threads submit while
a round trip is in flight go out together as one pipeline in the next one
(one ``send``, replies read in order). A lone call goes out at once, so
batching adds no latency; eight worker threads acking together cost one
round trip instead of eight. Each caller still gets only its own reply, or
its own error, once the server has answered it: nothing is weakened.

A broken connection fails every command of the round trip that was in
flight (the caller retries, as before, through ``RedisBroker._call``); the
next call reconnects.
"""

from __future__ import annotations

import hashlib
import threading
from typing import Any

import redis

Arg = bytes | str | int | float


class _Slot:
    __slots__ = ("command", "error", "pending", "reply")

    def __init__(self, command: tuple[Arg, ...]) -> None:
        self.command = command
        self.pending = True
        self.reply: Any = None
        self.error: BaseException | None = None


class Link:
    """One connection, shared by threads; commands that meet share a round trip."""

    def __init__(self, pool: redis.ConnectionPool) -> None:
        self._pool = pool
        self._connection: Any = None
        self._changed = threading.Condition(threading.Lock())
        self._queue: list[_Slot] = []
        self._busy = False

    def call(self, *command: Arg) -> Any:
        """Send one command and return its reply (raising its error, if any)."""
        slot = _Slot(command)
        with self._changed:
            self._queue.append(slot)
            while slot.pending:
                if self._busy:
                    self._changed.wait()
                else:
                    self._lead()
        if slot.error is not None:
            raise slot.error
        return slot.reply

    def close(self) -> None:
        """Close the socket; a later call would open a new one."""
        connection = self._connection
        if connection is not None:
            connection.disconnect()

    def _lead(self) -> None:
        """Send everything queued as one pipeline (lock held on entry and exit)."""
        self._busy = True
        batch, self._queue = self._queue, []
        self._changed.release()
        try:
            self._round_trip(batch)
        finally:
            self._changed.acquire()
            for slot in batch:
                slot.pending = False
            self._busy = False
            self._changed.notify_all()

    def _round_trip(self, batch: list[_Slot]) -> None:
        done = 0
        try:
            connection = self._connected()
            if len(batch) == 1:
                packed = connection.pack_command(*batch[0].command)
            else:
                packed = connection.pack_commands([slot.command for slot in batch])
            connection.send_packed_command(packed, check_health=False)
            for slot in batch:
                try:
                    slot.reply = connection.read_response()
                except redis.ResponseError as error:  # this command's own error
                    slot.error = error
                done += 1
        except BaseException as error:  # noqa: BLE001 - each caller of the batch re-raises it
            # Replies still unread would answer the wrong commands: start over.
            self._drop()
            for slot in batch[done:]:
                slot.error = error

    def _connected(self) -> Any:
        connection = self._connection
        if connection is None:
            pool = self._pool
            connection = pool.connection_class(**pool.connection_kwargs)
            connection.connect()
            self._connection = connection
        return connection

    def _drop(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.disconnect()


class Script:
    """A Lua script run by ``EVALSHA`` on a link, loaded again if the server forgot it."""

    def __init__(self, link: Link, source: str) -> None:
        self._link = link
        self._source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()

    def __call__(self, args: list[Any]) -> Any:
        try:
            return self._link.call("EVALSHA", self.sha, 0, *args)
        except redis.exceptions.NoScriptError:
            # A restarted (or flushed) server: load it and run it once more.
            self._link.call("SCRIPT", "LOAD", self._source)
            return self._link.call("EVALSHA", self.sha, 0, *args)
