"""The PostgreSQL broker's result feed: a producer hears of its jobs' ends (LISTEN/NOTIFY).

While a producer waits for results (``PostgresBroker.wait_for_results``),
its broker object LISTENs on a reply channel of its own, and its enqueues
record that channel with each job (the ``reply_to`` column). The ack of
such a job sends the outcome there with ``pg_notify``, inside the ack's own
statement (the ``tell`` fragment of ``sql/queries.sql``): PostgreSQL
delivers it once the ack commits, never if it does not. A job nobody waits
for carries no channel, and its ack sends nothing.

A notification is a hint, at most once: one sent while the LISTEN
connection was down is lost, and the producer's watcher polls now and then
for what it missed. Anyone who can reach the database can notify any
channel, so news that does not read whole names only its job (whose record
the producer then reads), or nothing.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable
from typing import cast

from psycopg import sql

from ..._message import ErrorInfo, State
from .._base import Finished
from .link import Connection, Listener

_STATES = {state.value: state for state in State if state.finished}


def reply_channel() -> str:
    """A channel name of one broker object's own.

    45 characters, under PostgreSQL's 63; the dots keep it apart from every
    namespace's wake-up channel (a schema name: letters, digits, underscores).
    """
    return f"offload.done.{uuid.uuid4().hex}"


class Feed:
    """A LISTEN connection on a reply channel; the channel enqueues record while it listens."""

    def __init__(
        self, open_connection: Callable[[], Connection], scrub: Callable[[str], str]
    ) -> None:
        self.channel = reply_channel()
        self.reply_to: str | None = None
        """The channel while listening, else None: what an enqueue records with its jobs."""
        listen = sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)).as_string(None)
        self._listener = Listener(open_connection, listen, scrub)
        # The listener's counters where the last wait left them: an interrupt
        # since then ends the next wait at once, even one not begun yet.
        self._mark: tuple[int, int] | None = None

    def wait(self, timeout: float) -> list[Finished]:
        """The jobs whose end was heard, waiting up to ``timeout`` for the first.

        The first call LISTENs; only then do enqueues record the channel (so
        no ack can send news before anyone hears it). A lost connection is
        opened again by the next call, even with a zero timeout (at most
        once per ``Listener.RETRY_AFTER``); meanwhile the calls sleep out
        their timeout (the caller polls).
        """
        mark = self._mark if self._mark is not None else self._listener.mark()
        if self._listener.listen():
            self.reply_to = self.channel
        payloads = self._listener.heard(timeout, mark)
        self._mark = self._listener.mark()
        return [done for payload in payloads if (done := finished(payload)) is not None]

    def interrupt(self) -> None:
        """End the wait in progress now, still listening (or the next one, if none is).

        Nothing is lost: what comes meanwhile waits in the connection for
        the next call.
        """
        self._listener.interrupt()

    def stop(self) -> None:
        """Stop listening: enqueues stop recording the channel; a wait ends at once."""
        self.reply_to = None
        self._listener.hang_up()

    def close(self) -> None:
        self.reply_to = None
        self._listener.close()


def finished(payload: str) -> Finished | None:
    """A job's news as an ack sent it; None for what names no job.

    ``[id]``, or ``[id, state, result, etype, emsg, etb, eargs]``: the
    result in base64 (or null), the error's columns (or nulls).
    """
    try:
        news = json.loads(payload)
    except ValueError:  # json's errors and UnicodeDecodeError
        return None
    if type(news) is not list or not news or type(news[0]) is not str or not news[0]:
        return None
    try:
        return _outcome(news)
    except ValueError:  # binascii.Error as well
        return Finished(news[0])


def _outcome(news: list[object]) -> Finished:
    """``news`` read whole; ``ValueError`` when a part is out of place."""
    if len(news) != 7:
        raise ValueError("not the length of an outcome")
    job_id, state_text, result, *error = news
    state = _STATES.get(state_text) if type(state_text) is str else None
    if state is None or not all(text is None or type(text) is str for text in error):
        raise ValueError("not a final state, or an error column that is not text")
    if result is not None and type(result) is not str:
        raise ValueError("a result that is not base64 text")
    data = None if result is None else base64.b64decode(result)  # skips PostgreSQL's newlines
    etype, emsg, etb, eargs = cast("list[str | None]", error)
    if etype is None:
        if state is State.FAILED:
            raise ValueError("a failure without its error: its record says why")
        return Finished(str(job_id), state, data)
    return Finished(str(job_id), state, data, ErrorInfo(etype, emsg or "", etb or "", eargs))
