"""``JsonSerializer``, the default: JSON with exact round trips of common types.

Plain JSON carries ``None``, bool, int, float, str, list and dicts with str
keys; any other supported value becomes ``{"__offload__": "<tag>", "v": ...}``
so that a round trip gives back the same types (a tuple, not a list; ``1``
and ``1.0`` kept apart). Tags: tuple, set, frozenset, dict (as pairs: non-str
keys, or a user's dict holding the tag key), float (nan, infinities), int
(over ~600 digits), datetime, date, time, timedelta, uuid, decimal, bytes
(base64), enum and dataclass (by ``module:qualname``, imported again on
decode, if the app's ``ModulePolicy`` allows the module).
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import enum
import importlib
import json
import reprlib
import sys
import uuid
from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import Any

from .._errors import NotSerializable, PayloadRejected
from ._base import DEFAULT_MAX_SIZE, ModulePolicy, check_limit, check_size, imported_modules

_TAG = "__offload__"

# Ints this big are written as hex: CPython refuses to turn ints of more than
# ``sys.get_int_max_str_digits()`` digits (4300 by default, 640 at least) into
# decimal text, which is what json writes and reads.
_BIG_INT = 1 << 2000
_LEAVES = frozenset({str, bool, type(None)})


# --- encoding ---------------------------------------------------------------


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


def plain_call(args: tuple[Any, ...], kwargs: dict[str, Any]) -> bytes | None:
    """``[args, kwargs]`` as ``JsonSerializer.encode`` writes it, when every argument is a
    plain JSON leaf (the usual call: ids, names, numbers); None for anything else.

    The same bytes without the walk, which costs twice the encoding itself
    for such a call; anything that needs a tag, an escape or an error's path
    takes the walk.
    """
    for x in args:  # a loop here: a call of _plain_leaf per argument costs as much again
        t = type(x)
        if not (t in _LEAVES or (t is int and -_BIG_INT < x < _BIG_INT) or _finite(t, x)):
            return None
    if kwargs and (
        not all(map(_plain_leaf, kwargs.values()))
        or any(type(k) is not str or k == _TAG for k in kwargs)
    ):
        return None
    try:
        return _dumps([list(args), kwargs]).encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: the walk's error says what to do
        return None


def _plain_leaf(x: Any) -> bool:
    """Written by the walk exactly as ``json.dumps`` writes it: no tag, no error."""
    t = type(x)
    return t in _LEAVES or (t is int and -_BIG_INT < x < _BIG_INT) or _finite(t, x)


def _finite(t: type, x: Any) -> bool:
    return t is float and x - x == 0.0  # false for nan and the infinities only


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


# --- decoding ---------------------------------------------------------------


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
_ENCODER = json.JSONEncoder(
    ensure_ascii=False, separators=(",", ":"), allow_nan=False, check_circular=False
)


def _c_dumps() -> Callable[[Any], str] | None:
    """``_ENCODER.encode`` without its per-call set-up, or None where ``json`` has no C
    encoder (another interpreter) or builds it differently.

    ``JSONEncoder.encode`` builds its C encoder anew on every call (about 80
    bytecodes, a third of encoding a plain call's arguments); this builds
    one, with the arguments ``iterencode`` gives it, and joins its chunks as
    ``encode`` does: the same bytes. ``c_make_encoder`` is what ``encode``
    itself uses, but not documented: any surprise falls back to ``encode``.
    """
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:
        return None
    e = _ENCODER
    try:
        encoder = make(
            None,
            e.default,
            json.encoder.encode_basestring,
            None,
            e.key_separator,
            e.item_separator,
            e.sort_keys,
            e.skipkeys,
            e.allow_nan,
        )
    except TypeError:  # another signature
        return None
    join = "".join

    def dumps(value: Any) -> str:
        return join(encoder(value, 0))

    probe = [[1, "\u00e9\n", 2.5, None, True], {"k": [{}]}]
    return dumps if dumps(probe) == '[[1,"\u00e9\\n",2.5,null,true],{"k":[{}]}]' else None


_dumps: Callable[[Any], str] = _c_dumps() or _ENCODER.encode
# What a malformed payload (bad JSON, a tag with a value of the wrong shape) raises.
_MALFORMED = (ValueError, TypeError, LookupError, AttributeError, ArithmeticError, RecursionError)


def _loads(decoder: json.JSONDecoder) -> Callable[[str], Any]:
    """``decoder.decode`` without its two Python layers when the text is one JSON value
    from its first character to its last (what offload writes), else ``decode`` itself.

    ``decode`` skips whitespace with a regex, then ``raw_decode`` calls the
    scanner; a payload that starts with whitespace makes the scanner stop at
    once, one with anything after its value ends short: both go to ``decode``,
    which reads or refuses them as it always has. Same values, same errors.
    """
    scan, decode = getattr(decoder, "scan_once", None), decoder.decode
    if scan is None:  # not a CPython-like json: nothing to skip
        return decode

    def loads(text: str) -> Any:
        try:
            value, end = scan(text, 0)
        except StopIteration:
            return decode(text)
        return value if end == len(text) else decode(text)

    return loads


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
        self.max_size = check_limit(max_size)
        self.modules = modules or imported_modules
        """Which modules' classes a payload may name (an app passes its declarations)."""
        self._loads = _loads(json.JSONDecoder(object_hook=_untagger(self.modules)))

    def encode(self, value: object, *, path: str = "value") -> bytes:
        """UTF-8 JSON for ``value``; ``NotSerializable`` names the part that cannot be."""
        try:
            t = type(value)  # a leaf (a task's usual result: None, an id, a count) is itself
            plain = t in _LEAVES or (t is int and -_BIG_INT < value < _BIG_INT)  # type: ignore[operator]
            data = _dumps(value if plain else _walk(value, set())).encode("utf-8")
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
        if self.max_size is not None and len(data) > self.max_size:
            check_size(data, self.max_size, path, type(value).__qualname__)
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
