"""Turning a call's arguments (and a task's result) into bytes and back.

``JsonSerializer`` is the default. Plain JSON carries ``None``, bool, int,
float, str, list and dicts with str keys; any other supported value becomes
``{"__offload__": "<tag>", "v": ...}`` so that a round trip gives back the
same types (a tuple, not a list; ``1`` and ``1.0`` kept apart). Tags: tuple,
set, frozenset, dict (as pairs: non-str keys, or a user's dict holding the
tag key), float (nan, infinities), int (over ~600 digits), datetime, date,
time, timedelta, uuid, decimal, bytes (base64), enum and dataclass (by
``module:qualname``, imported again on decode).

``PickleSerializer`` is opt-in and signed with HMAC-SHA256: a worker never
unpickles bytes that its own key did not sign.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import enum
import hashlib
import hmac
import importlib
import json
import pickle
import reprlib
import sys
import uuid
from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import Any, Protocol

from ._errors import ConfigurationError, NotSerializable, PayloadRejected, PayloadTooLarge
from ._message import Message

DEFAULT_MAX_SIZE = 1_048_576
"""1 MiB: a broker row, not a blob store."""

_TAG = "__offload__"

# Ints this big are written as hex: CPython refuses to turn ints of more than
# ``sys.get_int_max_str_digits()`` digits (4300 by default, 640 at least) into
# decimal text, which is what json writes and reads.
_BIG_INT = 1 << 2000
_LEAVES = frozenset({str, bool, type(None)})


class Serializer(Protocol):
    """What turns values into bytes and back: JSON by default, pickle on request.

    ``encode`` raises ``NotSerializable`` (``PayloadTooLarge`` over
    ``max_size``) naming ``path``; ``decode`` raises ``PayloadRejected``.
    """

    name: str
    """A short identifier (``"json"``, ``"pickle"``) for logs and messages."""
    max_size: int | None
    """The largest payload ``encode`` makes, in bytes; ``None`` for no limit."""

    def encode(self, value: object, *, path: str = "value") -> bytes:
        """The bytes of ``value``; ``path`` names it in errors."""

    def decode(self, data: bytes) -> Any:
        """The value that ``encode`` was given."""


def encode_call(serializer: Serializer, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bytes:
    """One payload for a call's arguments; an error names the culprit (``args[1].user``).

    >>> encode_call(JsonSerializer(), (1, "a"), {"when": None})
    b'[[1,"a"],{"when":null}]'
    """
    try:
        data = serializer.encode([list(args), kwargs], path="arguments")
    except PayloadTooLarge:
        raise
    except NotSerializable as exc:
        # Encoding each argument alone again, on the failure path only, names
        # the argument for any serializer (pickle included) at no cost otherwise.
        raise _locate(serializer, args, kwargs) or exc from None
    _check_size(data, serializer.max_size, "arguments", "list")
    return data


def decode_call(serializer: Serializer, data: bytes) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The ``(args, kwargs)`` that ``encode_call`` was given."""
    value = serializer.decode(data)
    if (
        type(value) is list
        and len(value) == 2
        and type(value[0]) is list
        and type(value[1]) is dict
        and all(type(key) is str for key in value[1])
    ):
        return tuple(value[0]), value[1]
    raise PayloadRejected(
        f"the payload holds a {type(value).__name__}, not a call's [args, kwargs]; "
        "producer and worker must use the same serializer and offload version"
    )


def _locate(
    serializer: Serializer, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> NotSerializable | None:
    named = [(f"args[{i}]", arg) for i, arg in enumerate(args)]
    named += [(f"kwargs[{key!r}]", arg) for key, arg in kwargs.items()]
    for path, arg in named:
        try:
            serializer.encode(arg, path=path)
        except PayloadTooLarge:
            continue
        except NotSerializable as exc:
            return exc
    return None


def _check_limit(max_size: int | None) -> int | None:
    if max_size is not None and (type(max_size) is not int or max_size <= 0):
        raise ConfigurationError(
            f"max_size must be a positive int (bytes) or None, not {max_size!r}"
        )
    return max_size


def _check_size(data: bytes, limit: int | None, path: str, type_name: str) -> None:
    if limit is not None and len(data) > limit:
        raise PayloadTooLarge(path, type_name, len(data), limit)


# --- JSON: encoding ---------------------------------------------------------


class _Unencodable(Exception):
    """Raised inside the walk; each container on the way out adds its segment.

    The path is built only when something fails: no bookkeeping per value.
    """

    def __init__(self, value: object, reason: str) -> None:
        self.value = value
        self.reason = reason
        self.segments: list[str] = []

    def error(self, root: str) -> NotSerializable:
        path = root + "".join(reversed(self.segments))
        return NotSerializable(path, type(self.value).__qualname__, self.reason)


def _walk(x: Any, active: set[int]) -> Any:
    """``x`` as plain JSON values, tagged where JSON has no exact equivalent.

    ``active`` holds the ids of the containers being walked: meeting one of
    them again is a cycle. Exact type checks come first, for speed and so that
    a subclass (``IntEnum``, ``OrderedDict``) never passes as its base.
    """
    t = type(x)
    if t in _LEAVES or (t is int and -_BIG_INT < x < _BIG_INT):
        return x
    if t is list:
        return _walk_items(x, active)
    if t is dict:
        return _walk_dict(x, active)
    if t is float and x - x == 0.0:  # false for nan and the infinities only
        return x
    encoder = _ENCODERS.get(t) or _class_encoder(x)
    return encoder(x, active)


def _enter(x: object, active: set[int]) -> int:
    key = id(x)
    if key in active:
        raise _Unencodable(
            x,
            f"a {type(x).__name__} that contains itself (a reference cycle) cannot be "
            "encoded as JSON; break the cycle or pass an id",
        )
    active.add(key)
    return key


def _walk_items(x: Iterable[Any], active: set[int]) -> list[Any]:
    key = _enter(x, active)
    out: list[Any] = []
    append = out.append
    try:
        for item in x:
            t = type(item)
            if t in _LEAVES or (t is int and -_BIG_INT < item < _BIG_INT):
                append(item)
            else:
                append(_walk(item, active))
    except _Unencodable as exc:
        exc.segments.append(f"[{len(out)}]")
        raise
    active.discard(key)
    return out


def _walk_dict(x: dict[Any, Any], active: set[int]) -> Any:
    key = _enter(x, active)
    out: dict[str, Any] = {}
    for k, v in x.items():
        if type(k) is not str:
            result = _walk_pairs(x, active)  # rare: values before k are walked twice
            break
        t = type(v)
        if t in _LEAVES or (t is int and -_BIG_INT < v < _BIG_INT):
            out[k] = v
            continue
        try:
            out[k] = _walk(v, active)
        except _Unencodable as exc:
            exc.segments.append(f"[{k!r}]")
            raise
    else:
        result = _escaped(out)
    active.discard(key)
    return result


def _walk_pairs(x: dict[Any, Any], active: set[int]) -> Any:
    """A dict with a key that is not a str, as ``[key, value]`` pairs."""
    pairs = []
    for k, v in x.items():
        try:
            key = _walk(k, active)
        except _Unencodable as exc:
            exc.segments.append(f"[key {reprlib.repr(k)}]")
            raise
        try:
            pairs.append([key, _walk(v, active)])
        except _Unencodable as exc:
            exc.segments.append(f"[{reprlib.repr(k)}]")
            raise
    return _tagged("dict", pairs)


def _escaped(out: dict[str, Any]) -> Any:
    # A user's own key that looks like ours must not be read back as a tag.
    return _tagged("dict", [[k, v] for k, v in out.items()]) if _TAG in out else out


def _tagged(tag: str, value: Any) -> dict[str, Any]:
    return {_TAG: tag, "v": value}


def _encode_datetime(x: dt.datetime, active: set[int]) -> Any:
    tagged = _tagged("datetime", x.isoformat())  # offset and microseconds included
    if type(x.tzinfo).__module__ == "zoneinfo":
        tagged["tz"] = getattr(x.tzinfo, "key", None)  # the zone by name, not just its offset
    return tagged


_ENCODERS: dict[type, Callable[[Any, set[int]], Any]] = {
    list: _walk_items,
    dict: _walk_dict,
    tuple: lambda x, a: _tagged("tuple", _walk_items(x, a)),
    set: lambda x, a: _tagged("set", _walk_items(x, a)),
    frozenset: lambda x, a: _tagged("frozenset", _walk_items(x, a)),
    float: lambda x, a: _tagged("float", repr(x)),
    int: lambda x, a: _tagged("int", hex(x)),
    dt.datetime: _encode_datetime,
    dt.date: lambda x, a: _tagged("date", x.isoformat()),
    dt.time: lambda x, a: _tagged("time", x.isoformat()),
    dt.timedelta: lambda x, a: _tagged("timedelta", [x.days, x.seconds, x.microseconds]),
    uuid.UUID: lambda x, a: _tagged("uuid", str(x)),
    Decimal: lambda x, a: _tagged("decimal", str(x)),
    bytes: lambda x, a: _tagged("bytes", base64.b64encode(x).decode("ascii")),
}


def _class_encoder(x: object) -> Callable[[Any, set[int]], Any]:
    """The encoder for a value whose exact type is not in ``_ENCODERS``."""
    t = type(x)
    if dataclasses.is_dataclass(t):
        return _encode_dataclass
    if isinstance(x, enum.Enum):
        return lambda x, a: {_TAG: "enum", "cls": _ref(x), "v": _walk(x.value, a)}
    base = next((b.__name__ for b in (str, *_ENCODERS) if isinstance(x, b)), None)
    if base is not None:
        raise _Unencodable(
            x,
            f"a {t.__name__} is a subclass of {base} and would arrive as a plain {base}; "
            f"convert it first ({base}(value)) or use a dataclass",
        )
    raise _Unencodable(
        x,
        f"a {t.__name__} object cannot be encoded as JSON; pass its id (a str or int) and "
        "load it in the task, or, for plain data, use a dataclass of JSON-friendly fields",
    )


def _encode_dataclass(x: Any, active: set[int]) -> Any:
    ref = _ref(x)
    key = _enter(x, active)
    fields: dict[str, Any] = {}
    try:
        for name in _dataclass_fields(type(x))[0]:
            fields[name] = _walk(getattr(x, name), active)
    except _Unencodable as exc:
        exc.segments.append(f".{name}")
        raise
    active.discard(key)
    return {_TAG: "dataclass", "cls": ref, "v": _escaped(fields)}


_REFS: dict[type, str] = {}


def _ref(x: object) -> str:
    """``module:qualname`` of ``x``'s class, checked to lead back to it (a worker imports it so)."""
    cls = type(x)
    ref = _REFS.get(cls)
    if ref is None:
        ref = f"{cls.__module__}:{cls.__qualname__}"
        found: Any = sys.modules.get(cls.__module__)
        for part in cls.__qualname__.split("."):
            found = getattr(found, part, None)
        if found is not cls:
            raise _Unencodable(
                x,
                f"the {cls.__name__} class cannot be imported as {ref} (it is defined in a "
                "function or made at run time); define it at the top level of a module",
            )
        _REFS[cls] = ref
    return ref


_FIELDS: dict[type, tuple[tuple[str, ...], frozenset[str]]] = {}


def _dataclass_fields(cls: type) -> tuple[tuple[str, ...], frozenset[str]]:
    """Names of a dataclass's fields, and of those ``__init__`` does not take."""
    names = _FIELDS.get(cls)
    if names is None:
        fields = dataclasses.fields(cls)
        names = (tuple(f.name for f in fields), frozenset(f.name for f in fields if not f.init))
        _FIELDS[cls] = names
    return names


# --- JSON: decoding ---------------------------------------------------------


ModulePolicy = Callable[[str], bool]
"""Whether a payload may name classes (dataclass and enum tags) of a module."""


def imported_modules(module: str) -> bool:
    """The policy of a serializer made without one: modules this process has
    imported already. Decoding never imports anything then."""
    return module in sys.modules


def _find_class(ref: Any, kind: str, check: Callable[[type], bool], allows: ModulePolicy) -> Any:
    """The class a tag names, if the policy allows its module; else ``PayloadRejected``."""
    module, _, qualname = str(ref).partition(":")
    if not allows(module):
        raise PayloadRejected(
            f"the payload names the {kind} {ref}, of module {module!r}, which this app does "
            f"not include: nothing was imported or built. If the class is yours, add its "
            f"module: App(..., include=[{module!r}]) (or OFFLOAD_INCLUDE={module})"
        )
    try:
        found: Any = importlib.import_module(module)  # allowed: named by the configuration
        for part in qualname.split("."):
            found = getattr(found, part)
    except (ImportError, AttributeError, ValueError, TypeError) as exc:
        raise PayloadRejected(
            f"the payload holds a {ref} {kind} but this process cannot import it "
            f"({type(exc).__name__}: {exc}); define it at the top level of a module "
            "(not __main__) and deploy the same code to producer and worker"
        ) from None
    # Defined in that module, not merely imported into it: the policy names
    # modules, and a module's imports are not its declarations.
    if not (
        isinstance(found, type)
        and check(found)
        and found.__module__ == module
        and found.__qualname__ == qualname
    ):
        raise PayloadRejected(f"the payload names {ref} as a {kind}, and it is not one")
    return found


def _decode_datetime(d: dict[str, Any]) -> dt.datetime:
    value = dt.datetime.fromisoformat(d["v"])
    if d.get("tz") is None:
        return value
    import zoneinfo  # only for zoned values: it costs milliseconds to import

    try:
        return value.astimezone(zoneinfo.ZoneInfo(d["tz"]))
    except zoneinfo.ZoneInfoNotFoundError:
        return value  # the same instant at a fixed offset: better than losing the task


_DECODERS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "tuple": lambda d: tuple(d["v"]),
    "set": lambda d: set(d["v"]),
    "frozenset": lambda d: frozenset(d["v"]),
    "dict": lambda d: {k: v for k, v in d["v"]},
    "float": lambda d: float(d["v"]),
    "int": lambda d: int(d["v"], 16),
    "datetime": _decode_datetime,
    "date": lambda d: dt.date.fromisoformat(d["v"]),
    "time": lambda d: dt.time.fromisoformat(d["v"]),
    "timedelta": lambda d: dt.timedelta(*d["v"]),
    "uuid": lambda d: uuid.UUID(d["v"]),
    "decimal": lambda d: Decimal(d["v"]),
    "bytes": lambda d: base64.b64decode(d["v"], validate=True),
}


def _decode_dataclass(d: dict[str, Any], allows: ModulePolicy) -> Any:
    cls = _find_class(d["cls"], "dataclass", dataclasses.is_dataclass, allows)
    fields: dict[str, Any] = d["v"]
    other = _dataclass_fields(cls)[1]
    try:
        # Built as the worker would build it (validation, __post_init__ run; an
        # unknown field refused); fields outside __init__ restored as they were sent.
        obj = cls(**{name: v for name, v in fields.items() if name not in other})
        for name in other:
            if name in fields:
                object.__setattr__(obj, name, fields[name])
    except Exception as exc:
        raise PayloadRejected(f"{d['cls']} could not be rebuilt from the payload: {exc!r}") from exc
    return obj


def _decode_enum(d: dict[str, Any], allows: ModulePolicy) -> Any:
    return _find_class(d["cls"], "enum", lambda c: issubclass(c, enum.Enum), allows)(d["v"])


_CLASS_DECODERS: dict[str, Callable[[dict[str, Any], ModulePolicy], Any]] = {
    "dataclass": _decode_dataclass,
    "enum": _decode_enum,
}


def _untagger(allows: ModulePolicy) -> Callable[[dict[str, Any]], Any]:
    """json's ``object_hook`` for a serializer whose classes come from ``allows``."""

    def untag(d: dict[str, Any]) -> Any:
        # Called innermost first, so ``v`` is decoded already.
        if _TAG not in d:
            return d
        tag = d[_TAG]
        decoder = _DECODERS.get(tag)
        if decoder is not None:
            return decoder(d)
        class_decoder = _CLASS_DECODERS.get(tag)
        if class_decoder is not None:
            return class_decoder(d, allows)
        raise PayloadRejected(
            f"the payload holds a value tagged {str(tag)[:60]!r}, unknown to this version of "
            "offload; run the same offload version on producer and worker"
        )

    return untag


# Built once: json.dumps/loads with options make a new encoder on every call.
# No check_circular: the walk has refused cycles already.
_dumps = json.JSONEncoder(
    ensure_ascii=False, separators=(",", ":"), allow_nan=False, check_circular=False
).encode
# What a malformed payload (bad JSON, a tag with a value of the wrong shape) raises.
_MALFORMED = (ValueError, TypeError, LookupError, AttributeError, ArithmeticError, RecursionError)


class JsonSerializer:
    """The default serializer: JSON, with exact round trips for common Python types.

    >>> s = JsonSerializer()
    >>> s.decode(s.encode({"on": datetime.date(2024, 5, 1), "ids": (1, 2)}))
    {'on': datetime.date(2024, 5, 1), 'ids': (1, 2)}

    Time zones: a datetime in a ``zoneinfo.ZoneInfo`` zone comes back in that
    zone (or, on a worker without the zone's data, as the same instant at a
    fixed offset); any other tzinfo comes back as a fixed ``datetime.timezone``
    offset, and a ``time`` keeps only a fixed offset. Sets are written in
    iteration order, so equal sets may encode to different bytes.
    """

    name = "json"

    def __init__(
        self, max_size: int | None = DEFAULT_MAX_SIZE, *, modules: ModulePolicy | None = None
    ) -> None:
        self.max_size = _check_limit(max_size)
        self.modules = modules or imported_modules
        """Which modules' classes a payload may name (an app passes its declarations)."""
        self._loads = json.JSONDecoder(object_hook=_untagger(self.modules)).decode

    def encode(self, value: object, *, path: str = "value") -> bytes:
        """UTF-8 JSON for ``value``; ``NotSerializable`` names the part that cannot be."""
        try:
            data = _dumps(_walk(value, set())).encode("utf-8")
        except _Unencodable as exc:
            raise exc.error(path) from None
        except RecursionError:
            reason = "is nested too deeply (hundreds of levels) to encode; flatten it"
            raise NotSerializable(path, type(value).__qualname__, reason) from None
        except UnicodeEncodeError as exc:
            bad = exc.object[max(0, exc.start - 20) : exc.end + 20]
            reason = (
                f"holds text that is not valid Unicode (a lone surrogate, near {bad!r}), as "
                "os.listdir() or errors='surrogateescape' can return; pass it as bytes "
                "(text.encode('utf-8', 'surrogateescape')) or clean the text first"
            )
            raise NotSerializable(path, type(value).__qualname__, reason) from None
        _check_size(data, self.max_size, path, type(value).__qualname__)
        return data

    def decode(self, data: bytes) -> Any:
        """The value ``encode`` was given; ``PayloadRejected`` if ``data`` is not such JSON."""
        try:
            return self._loads(data.decode("utf-8"))
        except _MALFORMED as exc:
            raise PayloadRejected(
                f"the payload is not valid offload JSON ({type(exc).__name__}: {exc}); "
                "producer and worker must use the same serializer"
            ) from None


# --- pickle -----------------------------------------------------------------

_SIGNATURE_SIZE = hashlib.sha256().digest_size
_SEAL = "offload-seal"
"""The key of a message's seal in its ``meta``."""
_MIN_KEY_SIZE = 16


class PickleSerializer:
    """Pickle (protocol 5) signed with HMAC-SHA256: opt-in, for values JSON cannot carry.

    Unpickling runs code that the payload names, so ``decode`` checks the
    signature first and refuses unsigned, truncated or altered payloads.
    Producer and worker share ``key`` (``OFFLOAD_PICKLE_KEY``), 16 bytes or
    more: ``secrets.token_bytes(32)`` makes a good one.
    """

    name = "pickle"

    def __init__(self, key: bytes, max_size: int | None = DEFAULT_MAX_SIZE) -> None:
        if not isinstance(key, bytes) or len(key) < _MIN_KEY_SIZE:
            got = f"{len(key)} bytes" if isinstance(key, bytes) else f"a {type(key).__name__}"
            raise ConfigurationError(
                f"the pickle signing key must be at least {_MIN_KEY_SIZE} bytes, got {got}; "
                "make one with `python -c 'import secrets; print(secrets.token_hex(32))'` "
                "and give the same key (OFFLOAD_PICKLE_KEY) to producer and workers"
            )
        self._key = key
        self.max_size = _check_limit(max_size)

    def __repr__(self) -> str:
        return f"PickleSerializer(key=<{len(self._key)} bytes>, max_size={self.max_size!r})"

    def encode(self, value: object, *, path: str = "value") -> bytes:
        """The HMAC-SHA256 signature, then the pickle of ``value``."""
        try:
            body = pickle.dumps(value, protocol=5)
        except Exception as exc:  # pickling runs user code (__reduce__): anything goes
            raise NotSerializable(
                path,
                type(value).__qualname__,
                f"cannot be pickled ({type(exc).__name__}: {exc}); pass an id (a str or int) "
                "and load the object in the task",
            ) from exc
        data = hmac.digest(self._key, body, "sha256") + body
        _check_size(data, self.max_size, path, type(value).__qualname__)
        return data

    def seal(self, message: Message) -> None:
        """Sign the whole message, not only its payload: the task it names, its id
        and options. A worker refuses a message whose seal does not match, so
        that nobody without the key can point a signed payload at another task."""
        message.meta = {**(message.meta or {}), _SEAL: self._seal_of(message)}

    def check_seal(self, message: Message) -> None:
        """``PayloadRejected`` unless ``message`` carries this key's seal."""
        seal = (message.meta or {}).get(_SEAL, "")
        if not hmac.compare_digest(seal, self._seal_of(message)):
            raise PayloadRejected(
                "the message's signature does not match its task, id or options: it was "
                "written without the pickle key, or changed in the broker; nothing of it "
                "ran. Producer and worker must share OFFLOAD_PICKLE_KEY"
            )

    def _seal_of(self, message: Message) -> str:
        fields = [
            message.id,
            message.task,
            message.queue,
            message.priority,
            message.key,
            message.timeout,
            message.retries,
            message.max_deliveries,
            message.result_ttl,
        ]
        head = json.dumps(fields, separators=(",", ":"), default=repr).encode("utf-8", "replace")
        return hmac.new(self._key, head + b"\n" + (message.payload or b""), "sha256").hexdigest()

    def decode(self, data: bytes) -> Any:
        """The value, if ``data`` carries this key's signature; else ``PayloadRejected``."""
        signature, body = data[:_SIGNATURE_SIZE], data[_SIGNATURE_SIZE:]
        expected = hmac.digest(self._key, body, "sha256")
        if len(signature) < _SIGNATURE_SIZE or not hmac.compare_digest(signature, expected):
            raise PayloadRejected(
                "the pickle payload's signature does not match: it is unsigned, truncated or "
                "tampered with, or was signed with another key; producer and worker must use "
                "the pickle serializer with the same OFFLOAD_PICKLE_KEY"
            )
        try:
            return pickle.loads(body)
        except Exception as exc:  # signed by us, yet e.g. its class is gone from this worker
            raise PayloadRejected(
                f"the signed pickle payload could not be loaded ({type(exc).__name__}: {exc}); "
                "deploy the same code to producer and worker"
            ) from exc
