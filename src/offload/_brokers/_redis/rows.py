"""The rows the Redis scripts take and return, and the job hashes inspection reads.

Encoders build a script's arguments (``message_args``, ``lone_command``, ``error_text``);
decoders read what comes back (``delivery``, ``finished``) and what a job's
hash holds (``job_info``, ``job_state``). A hash is written by the scripts,
but anyone who reaches the server can change it: no decoder raises for what
a hash holds. A claim row that does not read makes a defect (the runner
dead-letters it alone, with the reason); inspection shows what reads.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from typing import Any

from ..._errors import MessageRejected
from ..._message import Delivery, ErrorInfo, JobInfo, Message, State, read_delivery
from .._base import Finished, lapsed_error
from .link import Arg, packed

# Built once: json.dumps with separators builds an encoder per call.
_compact = json.JSONEncoder(separators=(",", ":")).encode
# Built once, and given text: json.loads first works out the encoding of bytes
# (the meta blob is ASCII, as the encoder above writes it; UTF-8 is read as
# json.loads would read it).
_parse = json.JSONDecoder().decode


# -- the rows scripts take and return ---------------------------------------------


def enqueue_args(
    prefix: str, now: float, since: float, reply_to: str, messages: Sequence[Message]
) -> list[Arg]:
    """``ENQUEUE``'s arguments for ``messages`` (its queue listing flag "0");
    refuses a batch that names a job id twice before anything is sent."""
    stamp = repr(now)
    args: list[Arg] = [prefix, stamp, stamp if since == now else repr(since), "0", reply_to, "0"]
    if len(messages) > 1:
        seen: set[str] = set()
        for message in messages:
            if message.id in seen:
                raise ValueError(f"job id {message.id!r} appears twice in one enqueue")
            seen.add(message.id)
    for message in messages:
        args += message_args(message, now)
    return args


def lone_command(
    prefix: bytes, now: float, message: Message, register: bool, reply_to: str
) -> tuple[int, bytes] | None:
    """``ENQUEUE_ONE``'s arguments for ``message`` (one without a key), but the last
    (replay): their count with it, and them packed after ``prefix`` (the packed first).

    None when its due time is not a finite number: ``ENQUEUE`` takes that one,
    its Lua arithmetic as it always was. Else the ready member's due part and
    whether the job waits are worked out here as ``ENQUEUE`` works them out
    (``lua/prelude.lua``'s ``rank``, with the doubles that its strings hold).
    """
    if message.args or message.kwargs:
        _refuse_arguments(message)
    eta, priority = message.eta, int(message.priority)
    due = now if eta is None else float(eta)
    if not math.isfinite(due):
        return None
    if due > now:
        score, rank = repr(due).encode(), b""
    else:
        score, rank = b"%d" % -priority, b"%016d" % max(0, math.floor(due * 1e6))
    values = [
        b"1" if register else b"0",
        message.id.encode(),
        message.queue.encode(),
        b"%d" % priority,
        score,
        rank,
        b"%d" % int(message.attempt),
        meta_blob(message, now).encode(),
        message.payload or b"",
    ]
    ttl, deliveries = message.result_ttl, message.max_deliveries
    if eta is not None:
        values += (b"eta", repr(due).encode())
    if ttl is not None:
        values += (b"ttl", repr(float(ttl)).encode())
    if deliveries is not None:
        values += (b"md", b"%d" % int(deliveries))
    if reply_to:
        values += (b"rt", reply_to.encode())
    return len(values) + 2, prefix + packed(values)


def _refuse_arguments(message: Message) -> None:
    if message.args or message.kwargs:  # (the caller may have looked already)
        raise ValueError(
            f"message {message.id} carries Python arguments: a durable broker stores only "
            "encoded ones (message.payload). Send it through a durable App, which encodes "
            "its arguments."
        )


def message_args(message: Message, now: float) -> list[Arg]:
    """A message as ``ENQUEUE`` takes it: ``scripts.ENQUEUE_FIELDS`` values."""
    _refuse_arguments(message)
    eta, key, ttl, deliveries = message.eta, message.key, message.result_ttl, message.max_deliveries
    return [
        message.id,
        message.queue,
        int(message.priority),
        "" if eta is None else repr(float(eta)),
        _key_arg(key, message.key_horizon),
        "" if ttl is None else repr(float(ttl)),
        "" if deliveries is None else int(deliveries),
        int(message.attempt),
        meta_blob(message, now),
        message.payload or b"",
    ]


def _key_arg(key: str | None, horizon: float | None) -> str:
    """A key as ``ENQUEUE`` takes it: "=" + key ("" stays a key of its own), after its horizon."""
    if key is None:
        return ""
    return ("" if horizon is None else repr(float(horizon))) + "=" + key


def meta_blob(message: Message, now: float) -> str:
    """The ``m`` field: ``[task, timeout, retries, created, meta, no payload]`` as compact JSON.

    The usual message (no timeout, retries or meta of its own, a float
    creation time) is written without the encoder, a third of the time;
    the text is the same.
    """
    created = message.created or now
    if (
        message.timeout is None
        and message.retries is None
        and not message.meta
        and type(created) is float
        and _FINITE_MIN < created < _FINITE_MAX
    ):
        task = _task_json.get(message.task)
        if task is None:
            task = _compact(message.task)
            if len(_task_json) < 1000:
                _task_json[message.task] = task
        empty = "true" if message.payload is None else "false"
        return f"[{task},null,null,{created!r},null,{empty}]"
    rest = [
        message.task,
        message.timeout,
        message.retries,
        created,
        message.meta or None,
        message.payload is None,
    ]
    return _compact(rest)


_task_json: dict[str, str] = {}
"""Task names as JSON strings (there are few tasks, and many calls)."""
_FINITE_MIN, _FINITE_MAX = -float("inf"), float("inf")


def delivery(row: list[Any], until: float) -> Delivery:
    """One job of ``CLAIM``'s answer (``scripts.CLAIMED`` values), leased until ``until``.

    A job whose fields cannot be read whole (written or changed by something
    else than offload) comes back as a defect, for the runner to dead-letter
    alone: this never raises for what a hash holds.
    """
    raw_id, token, attempt, queue, rest, payload, priority, eta, key, deliveries, ttl, bad = row
    try:
        job_id = raw_id.decode()
    except UnicodeDecodeError:  # kept whole (surrogates): the ack must find its key
        job_id = raw_id.decode("utf-8", "surrogateescape")
        bad = bad or b"its id is not UTF-8 text"

    def build() -> Message:
        try:
            task, timeout, retries, created, meta, no_payload = _parse(
                rest.decode("utf-8", "surrogatepass")
            )
            return Message(
                job_id,
                task,
                (),
                {},
                queue=queue.decode(),
                priority=int(priority),
                eta=None if eta is None else float(eta),
                attempt=int(attempt),
                max_deliveries=None if deliveries is None else int(deliveries),
                key=None if key is None else key.decode(),
                timeout=timeout,
                retries=retries,
                created=created,
                payload=None if no_payload else payload,
                result_ttl=None if ttl is None else float(ttl),
                meta=meta,
            )
        except Exception as error:  # noqa: BLE001 - named by field for the reason
            raise ValueError(_row_problem(row) or str(error)) from None

    found = read_delivery(job_id, int(token), until, build)
    if not bad:
        return found
    # The script found what the fields cannot show (a lost state or queue field).
    message = Message(job_id, found.message.task, (), {})
    return Delivery(message, found.token, until, defect=_text(bad))


def _meta_blob(value: bytes) -> object:
    task, _timeout, _retries, _created, _meta, _no_payload = json.loads(value)
    return task


def _optional(convert: Callable[[Any], object]) -> Callable[[Any], object]:
    return lambda value: None if value is None else convert(value)


_ROW_FIELDS: tuple[tuple[int, str, Callable[[Any], object]], ...] = (
    (2, "attempt count (a)", int),
    (3, "queue (q)", bytes.decode),
    (4, "message (m)", _meta_blob),
    (6, "priority (p)", int),
    (7, "eta", _optional(float)),
    (8, "key (k)", _optional(bytes.decode)),
    (9, "max_deliveries (md)", _optional(int)),
    (10, "result_ttl (ttl)", _optional(float)),
)
"""What a claim row's values must decode as: index, the hash field, the decoder."""


def _row_problem(row: list[Any]) -> str | None:
    """Which field of a claim row does not decode, and what it holds (the slow path)."""
    for index, field, decode in _ROW_FIELDS:
        value = row[index]
        try:
            decode(value)
        except Exception as error:  # noqa: BLE001 - stored data may be anything
            return _field_problem(field, value, error)
    return None


def _field_problem(field: str, value: object, error: BaseException) -> str:
    if value is None:
        return f"its {field} field is missing"
    shown = repr(value[:60]) if isinstance(value, bytes) else repr(value)
    return (
        f"its {field} field holds {shown}, which does not decode ({type(error).__name__}: {error})"
    )


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    return value if isinstance(value, str) else repr(value)


# -- inspection and the reply channel ---------------------------------------------


def job_info(job_id: str, fields: dict[bytes, bytes]) -> JobInfo:
    """A job's hash (``HGETALL``) as inspection shows it; never raises (see ``_salvaged``)."""
    try:
        return _job_info(job_id, fields)
    except Exception:  # noqa: BLE001 - stored data may be anything
        return _salvaged(job_id, fields)


def _job_info(job_id: str, fields: dict[bytes, bytes]) -> JobInfo:
    task, _, _, created, _, no_payload = json.loads(fields[b"m"])
    if type(task) is not str or type(created) not in (int, float):
        raise ValueError("the message field (m) is not what offload writes")
    lapsed = fields.get(b"dl")
    text = fields.get(b"err")
    if lapsed is not None:
        error: ErrorInfo | None = lapsed_error(int(lapsed))
    else:
        error = None if text is None else error_info(text)
    finished, eta = fields.get(b"fin"), fields.get(b"eta")
    key, deliveries = fields.get(b"k"), fields.get(b"md")
    return JobInfo(
        id=job_id,
        task=task,
        queue=fields[b"q"].decode(),
        state=State(fields[b"s"].decode()),
        attempt=int(fields[b"a"]),
        priority=int(fields[b"p"]),
        eta=None if eta is None else float(eta),
        created=created,
        finished=None if finished is None else float(finished),
        key=None if key is None else key.decode(),
        max_deliveries=None if deliveries is None else int(deliveries),
        payload=None if no_payload else fields.get(b"pl", b""),
        result=fields.get(b"res"),
        error=error,
    )


_REJECTED = f"{MessageRejected.__module__}.{MessageRejected.__qualname__}"


def not_a_hash(job_id: str) -> JobInfo:
    """A job whose key holds another kind of value than a hash (see ``_salvaged``)."""
    return _salvaged(job_id, {b"s": b"failed"}, ["its key holds another kind of value than a hash"])


def _salvaged(
    job_id: str, fields: dict[bytes, bytes], problems: list[str] | None = None
) -> JobInfo:
    """A job whose hash is corrupt, as much of it as reads.

    Shown, not skipped: ``counts()`` counts it, a person looking at the
    dashboard must find it (to purge or retry it), and a producer waiting
    on it must hear that it will not run as sent, rather than wait forever
    or stall on an error while polling its other handles. Its state is the
    stored one when that reads (a worker that claims a queued one dead-
    letters it), else failed. Its error is the recorded one when that reads
    (for a dead-lettered defect, the reason), else one naming what is corrupt.
    """
    hash_ = _Salvage(fields, [] if problems is None else problems)
    task, created, no_payload = hash_.message()
    state = hash_.get(b"s", _state, State.FAILED, needed=True)
    error = hash_.get(b"err", error_info, None)
    lapsed = hash_.get(b"dl", _count, None)
    if lapsed is not None:
        error = lapsed_error(lapsed)
    elif b"dl" in fields:  # dead-lettered for lapsing, unreadably: the note tells
        error = None
    info = JobInfo(
        id=job_id,
        task=task,
        queue=hash_.get(b"q", _text, "?", needed=True),
        state=state,
        attempt=hash_.get(b"a", _count, 0, needed=True),
        priority=hash_.get(b"p", int, 0, needed=True),
        eta=hash_.get(b"eta", float, None),
        created=created,
        finished=hash_.get(b"fin", float, None),
        key=hash_.get(b"k", _text, None),
        max_deliveries=hash_.get(b"md", _count, None),
        payload=None if no_payload else fields.get(b"pl", b""),
        result=fields.get(b"res"),
        error=error,
    )
    if error is None and hash_.problems:
        info.error = ErrorInfo(
            _REJECTED,
            f"the broker's record of job {job_id} is corrupt: {'; '.join(hash_.problems)}. "
            "Something other than this offload version wrote or changed it; purge it, "
            "or enqueue the call again",
            "",
        )
    return info


class _Salvage:
    """Reads a corrupt hash field by field, noting each field that does not read."""

    def __init__(self, fields: dict[bytes, bytes], problems: list[str]) -> None:
        self.fields = fields
        self.problems = problems

    def get(
        self, field: bytes, decode: Callable[[bytes], Any], default: Any, *, needed: bool = False
    ) -> Any:
        value = self.fields.get(field)
        if value is None:
            if needed:
                self.problems.append(f"its {field.decode()} field is missing")
            return default
        try:
            return decode(value)
        except Exception as error:  # noqa: BLE001 - stored data may be anything
            self.problems.append(_field_problem(field.decode(), value, error))
            return default

    def message(self) -> tuple[str, float, bool]:
        """Task name, creation time and whether there is no payload, from ``m``."""
        blob = self.get(b"m", json.loads, None, needed=True)
        if blob is None:
            return "?", 0.0, False
        if type(blob) is not list or len(blob) != 6 or type(blob[0]) is not str:
            self.problems.append("its message field (m) is not what offload writes")
            return "?", 0.0, False
        if type(blob[3]) not in (int, float):
            self.problems.append("its creation time (in m) is not a number")
            return blob[0], 0.0, bool(blob[5])
        return blob[0], blob[3], bool(blob[5])


def _state(value: bytes) -> State:
    return State(value.decode())


def _count(value: bytes) -> int:
    number = int(value)
    if number < 0:
        raise ValueError("a count is not negative")
    return number


def job_state(value: bytes) -> State:
    """A job's stored state (``s``): one that is not a state shows as failed (see ``_salvaged``)."""
    try:
        return State(value.decode())
    except ValueError:  # UnicodeDecodeError as well
        return State.FAILED


def finished(data: bytes) -> Finished | None:
    """A job's news on its reply channel (``ACK``); None for what is not news.

    ``id state has_result size\n``, then the result (``size`` bytes), then the
    error. Anyone who reaches the server can publish there: news that does not
    read whole names only its job (whose record the producer then reads), or
    nothing.
    """
    head, newline, rest = data.partition(b"\n")
    parts = head.split(b" ")
    try:
        job_id = parts[0].decode()
    except UnicodeDecodeError:
        return None
    if not job_id:
        return None
    if not newline:
        return Finished(job_id)
    try:
        _, state, has_result, size = parts
        cut = int(size)
        if not 0 <= cut <= len(rest) or has_result not in (b"0", b"1"):
            raise ValueError("a result size or flag out of place")
        error = rest[cut:]
        return Finished(
            job_id,
            State(state.decode()),
            rest[:cut] if has_result == b"1" else None,
            error_info(error) if error else None,
        )
    except ValueError:  # UnicodeDecodeError and json's errors as well
        return Finished(job_id)


def error_info(text: bytes | str) -> ErrorInfo:
    """An error as ``error_text`` stored it (3 values before the exception's args were kept)."""
    parts = json.loads(text)
    if (
        type(parts) is list
        and len(parts) in (3, 4)
        and all(type(part) is str for part in parts[:3])
        and (len(parts) == 3 or parts[3] is None or type(parts[3]) is str)
    ):
        return ErrorInfo(*parts)
    raise ValueError("not an error record: [type, message, traceback, args]")


def error_text(error: ErrorInfo | None) -> str:
    if error is None:
        return ""
    return json.dumps([error.type, error.message, error.traceback, error.args])
