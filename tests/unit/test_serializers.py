"""Serializers: exact round trips, refusals that name the culprit, signed pickle."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import math
import pickle
import threading
import uuid
import zoneinfo
from collections import OrderedDict, namedtuple
from decimal import Decimal
from typing import Any

import pytest

from offload._errors import (
    ConfigurationError,
    NotSerializable,
    OffloadError,
    PayloadRejected,
    PayloadTooLarge,
)
from offload._serializers import (
    DEFAULT_MAX_SIZE,
    JsonSerializer,
    PickleSerializer,
    Serializer,
    decode_call,
    encode_call,
)

KEY = b"k" * 32


@dataclasses.dataclass
class Point:
    x: int
    y: float = 0.0


@dataclasses.dataclass(frozen=True)
class Frozen:
    name: str
    tags: frozenset[str] = frozenset()


@dataclasses.dataclass
class Order:
    id: int
    lines: list[Point]
    when: dt.datetime
    total: Decimal = dataclasses.field(init=False)
    note: str | None = None

    def __post_init__(self) -> None:
        self.total = Decimal(len(self.lines))


@dataclasses.dataclass(slots=True)
class Slotted:
    a: Any
    b: tuple[int, ...] = ()


@dataclasses.dataclass
class Holder:
    user: Any
    __offload__: int = 0  # a field named like the tag key must survive too


class Color(enum.Enum):
    RED = "red"
    BLUE = (1, 2)


class Level(enum.IntEnum):
    LOW = 1


class User:
    """A typical ORM-like object: not data JSON can carry."""

    def __init__(self, ident: int) -> None:
        self.id = ident


class MyInt(int):
    pass


Pair = namedtuple("Pair", "a b")

UTC = dt.timezone.utc
PLUS_0530 = dt.timezone(dt.timedelta(hours=5, minutes=30))
PARIS = zoneinfo.ZoneInfo("Europe/Paris")


def same(a: Any, b: Any) -> bool:
    """Equal, with the same types all the way down (1 is not 1.0, True is not 1)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if dataclasses.is_dataclass(a):
        names = [f.name for f in dataclasses.fields(a)]
        return same([getattr(a, n) for n in names], [getattr(b, n) for n in names])
    return same_leaf(a, b)


def same_leaf(a: Any, b: Any) -> bool:
    if isinstance(a, (float, Decimal)) and math.isnan(a):
        return str(a) == str(b)
    if isinstance(a, (set, frozenset)):  # repr tells 1, 1.0 and True apart
        return a == b and sorted(map(repr, a)) == sorted(map(repr, b))
    if isinstance(a, (dt.datetime, dt.time)) and a.tzinfo is not None:
        return bool(a == b and a.utcoffset() == b.utcoffset())
    return bool(a == b)


VALUES: list[Any] = [
    None,
    True,
    False,
    0,
    1,
    -7,
    2**64,
    -(2**100),
    10**5000,
    -(10**5000),
    1.0,
    0.0,
    -0.0,
    1.5,
    1e308,
    5e-324,
    float("nan"),
    float("inf"),
    float("-inf"),
    "",
    "héllo ✓ 𝄞",
    "\x00\n\"'\\",
    [],
    [1, 1.0, True, None, "1"],
    {},
    {"a": 1, "b": [1.0, {"c": None}]},
    (),
    (1,),
    (1, (2, (3, []))),
    [(1, 2), [3, 4]],
    set(),
    {1, 2, 3},
    {"a", (1, 2), frozenset({1})},
    frozenset(),
    frozenset({1.0, "x"}),
    {1: "int key", 1.5: "float", None: "none", (1, 2): "tuple"},
    {True: "bool", 2: "int"},
    {"__offload__": "tuple", "v": [1, 2]},
    {"__offload__": 1, 2: "mixed"},
    {"x": {"__offload__": {"__offload__": None}}},
    {frozenset({1}): {(1, "a"): [b"x"]}},
    dt.datetime(2024, 2, 29, 23, 59, 59, 999999),
    dt.datetime(2024, 1, 1, tzinfo=UTC),
    dt.datetime(2024, 1, 1, 12, 30, 0, 123, tzinfo=PLUS_0530),
    dt.datetime(2024, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=-3, seconds=7))),
    dt.datetime(1, 1, 1),
    dt.datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    dt.date(2024, 2, 29),
    dt.time(0, 0),
    dt.time(23, 59, 59, 1),
    dt.time(12, 0, tzinfo=PLUS_0530),
    dt.timedelta(0),
    dt.timedelta(days=-1, microseconds=1),
    dt.timedelta(days=999999999, seconds=86399, microseconds=999999),
    uuid.UUID("12345678-1234-5678-1234-567812345678"),
    uuid.uuid4(),
    Decimal("1.10"),
    Decimal("-0"),
    Decimal("1E+3"),
    Decimal("NaN"),
    Decimal("-Infinity"),
    Decimal("3.14159265358979323846264338327950288419716939937510"),
    b"",
    b"\x00\xff binary",
    bytes(range(256)),
    Point(1),
    Point(1, 2.5),
    Frozen("f", frozenset({"a"})),
    Slotted([Point(2)], (1, 2)),
    Holder({"k": (1,)}, 5),
    Color.RED,
    Color.BLUE,
    Level.LOW,
    {"orders": [(Point(1), {dt.date(2024, 1, 1)})], "ids": frozenset({uuid.UUID(int=1)})},
    [[[[[[[[[[1]]]]]]]]]],
]


@pytest.mark.parametrize("value", VALUES, ids=lambda v: type(v).__name__)
def test_json_round_trip_is_exact(value: Any) -> None:
    s = JsonSerializer()
    data = s.encode(value)
    assert isinstance(data, bytes)
    assert same(s.decode(data), value)


@pytest.mark.parametrize("value", VALUES, ids=lambda v: type(v).__name__)
def test_pickle_round_trip_is_exact(value: Any) -> None:
    s = PickleSerializer(KEY)
    assert same(s.decode(s.encode(value)), value)


def test_dataclass_with_init_false_field_and_post_init() -> None:
    s = JsonSerializer()
    order = Order(7, [Point(1), Point(2, 0.5)], dt.datetime(2024, 5, 1, tzinfo=UTC), note="n")
    order.total = Decimal("99.95")  # changed after __init__: must come back as sent
    back = s.decode(s.encode(order))
    assert type(back) is Order
    assert back == order
    assert back.total == Decimal("99.95")


def test_int_float_bool_stay_apart() -> None:
    s = JsonSerializer()
    back = s.decode(s.encode([1, 1.0, True, 0, 0.0, False]))
    assert [type(v) for v in back] == [int, float, bool, int, float, bool]


def test_json_is_plain_for_plain_values_and_compact_utf8() -> None:
    s = JsonSerializer()
    assert s.encode({"a": [1, "é", None]}) == '{"a":[1,"é",null]}'.encode()


def test_zoneinfo_datetime_keeps_its_zone_and_fold() -> None:
    s = JsonSerializer()
    # 2024-10-27 02:30 happens twice in Paris; fold=1 is the second, in CET.
    when = dt.datetime(2024, 10, 27, 2, 30, fold=1, tzinfo=PARIS)
    back = s.decode(s.encode(when))
    assert back == when
    assert back.tzinfo is PARIS
    assert back.utcoffset() == dt.timedelta(hours=1)
    assert (back.replace(tzinfo=None), back.fold) == (when.replace(tzinfo=None), 1)


def test_zoneinfo_unknown_on_the_worker_falls_back_to_the_offset() -> None:
    s = JsonSerializer()
    data = s.encode(dt.datetime(2024, 7, 1, 12, tzinfo=PARIS)).replace(
        b"Europe/Paris", b"Nowhere/Atlantis"
    )
    back = s.decode(data)
    assert back == dt.datetime(2024, 7, 1, 12, tzinfo=PARIS)
    assert back.utcoffset() == dt.timedelta(hours=2)


# --- calls --------------------------------------------------------------------


@pytest.mark.parametrize("serializer", [JsonSerializer(), PickleSerializer(KEY)], ids=str)
def test_call_round_trip(serializer: Serializer) -> None:
    args = (1, "a", {"k": [1, 2]}, (3,), Point(4))
    kwargs = {"when": dt.date(2024, 1, 1), "__offload__": {1, 2}}
    back_args, back_kwargs = decode_call(serializer, encode_call(serializer, args, kwargs))
    assert same(back_args, args)
    assert same(back_kwargs, kwargs)


def test_call_payload_is_readable_json() -> None:
    data = encode_call(JsonSerializer(), (1, "a", {"k": [1, 2]}), {"n": None})
    assert data == b'[[1,"a",{"k":[1,2]}],{"n":null}]'


@pytest.mark.parametrize(
    ("args", "kwargs", "path", "type_name"),
    [
        ((1, Holder(User(1))), {}, "args[1].user", "User"),
        ((), {"items": [1, 2, 3, User(1)]}, "kwargs['items'][3]", "User"),
        (({"key": User(1)},), {}, "args[0]['key']", "User"),
        ((User(1),), {}, "args[0]", "User"),
        ((), {"user": User(1)}, "kwargs['user']", "User"),
        (
            ([{"a": (0, {"b": [Slotted(Holder(User(1)))]})}],),
            {},
            "args[0][0]['a'][1]['b'][0].a.user",
            "User",
        ),
        (({1: {"x": User(1)}},), {}, "args[0][1]['x']", "User"),
        (({(1, User(1)): 2},), {}, "args[0][key (1, <User object>)][1]", "User"),
        (((1, 2, {threading.Lock()}),), {}, "args[0][2][0]", "lock"),
        ((0, 1, 2, object()), {}, "args[3]", "object"),
        ((print,), {}, "args[0]", "builtin_function_or_method"),
        ((OrderedDict(a=1),), {}, "args[0]", "OrderedDict"),
        ((Pair(1, 2),), {}, "args[0]", "Pair"),
        ((MyInt(3),), {}, "args[0]", "MyInt"),
        ((bytearray(b"x"),), {}, "args[0]", "bytearray"),
    ],
)
def test_unencodable_names_its_path_and_type(
    args: tuple[Any, ...], kwargs: dict[str, Any], path: str, type_name: str
) -> None:
    with pytest.raises(NotSerializable) as caught:
        encode_call(JsonSerializer(), args, kwargs)
    error = caught.value
    if "<User object>" in path:
        assert error.path.startswith("args[0][key (1, <")
        assert error.path.endswith(">)][1]")
    else:
        assert error.path == path
    assert error.type_name == type_name
    assert str(error).startswith(error.path + ": ")


def test_unencodable_message_says_what_to_do() -> None:
    with pytest.raises(NotSerializable) as caught:
        encode_call(JsonSerializer(), (1, Holder(User(1))), {})
    message = str(caught.value)
    assert message.startswith("args[1].user: a User object cannot be encoded as JSON")
    assert "pass its id" in message
    assert isinstance(caught.value, TypeError)
    assert isinstance(caught.value, OffloadError)


def test_subclass_message_suggests_converting() -> None:
    with pytest.raises(NotSerializable, match=r"subclass of dict.*dict\(value\)"):
        JsonSerializer().encode(OrderedDict(a=1))


def test_encode_path_defaults_to_value_and_can_be_named() -> None:
    s = JsonSerializer()
    with pytest.raises(NotSerializable) as caught:
        s.encode([User(1)])
    assert caught.value.path == "value[0]"
    with pytest.raises(NotSerializable) as caught:
        s.encode({"r": User(1)}, path="result")
    assert caught.value.path == "result['r']"


def test_local_dataclass_is_refused_at_encode() -> None:
    @dataclasses.dataclass
    class Local:
        a: int

    with pytest.raises(NotSerializable, match="define it at the top level") as caught:
        encode_call(JsonSerializer(), (Local(1),), {})
    assert caught.value.path == "args[0]"


def test_dataclass_that_cannot_be_imported_on_decode_is_rejected_by_name() -> None:
    s = JsonSerializer()
    data = s.encode(Point(1)).replace(b"test_serializers:Point", b"test_serializers:Gone")
    with pytest.raises(PayloadRejected, match=r"test_serializers:Gone"):
        s.decode(data)
    data = s.encode(Point(1)).replace(b"tests.test_serializers", b"no_such_module_xyz")
    data = data.replace(b"test_serializers:Point", b"no_such_module_xyz:Point")
    with pytest.raises(PayloadRejected, match=r"no_such_module_xyz:Point"):
        s.decode(data)


def test_dataclass_payload_with_unknown_field_is_rejected() -> None:
    s = JsonSerializer()
    data = s.encode(Point(1)).replace(b'"x":1', b'"x":1,"z":2')
    with pytest.raises(PayloadRejected, match="'z'"):
        s.decode(data)


def test_non_dataclass_named_as_dataclass_is_rejected() -> None:
    s = JsonSerializer()
    data = s.encode(Point(1)).replace(b":Point", b":User")
    with pytest.raises(PayloadRejected, match="not one"):
        s.decode(data)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"not json",
        b"\xff\xfe",
        b'{"__offload__":"no-such-tag","v":1}',
        b'{"__offload__":"tuple"}',
        b'{"__offload__":"bytes","v":"!!!"}',
        b'{"__offload__":"decimal","v":"abc"}',
        b'{"__offload__":"timedelta","v":"x"}',
        b'{"__offload__":["list"],"v":1}',
        b'{"__offload__":"enum","cls":"tests.test_serializers:Color","v":"green"}',
        b"[" * 100_000,
    ],
)
def test_malformed_json_payload_is_rejected(data: bytes) -> None:
    with pytest.raises(PayloadRejected):
        JsonSerializer().decode(data)


@pytest.mark.parametrize("data", [b"1", b"[[1],{}]" + b" []", b"[[1]]", b"[[1],[]]", b"[{},{}]"])
def test_decode_call_refuses_what_is_not_a_call(data: bytes) -> None:
    with pytest.raises(PayloadRejected):
        decode_call(JsonSerializer(), data)


# --- cycles and depth -----------------------------------------------------------


def _cycles() -> list[Any]:
    a: list[Any] = [1]
    a.append(a)
    d: dict[str, Any] = {}
    d["self"] = [d]
    holder = Holder(None)
    holder.user = {"back": holder}
    t: list[Any] = []
    t.append((t,))
    odd: dict[Any, Any] = {1: None}
    odd[2] = odd
    return [a, d, holder, t, odd]


@pytest.mark.parametrize("value", _cycles(), ids=["list", "dict", "dataclass", "tuple", "odd-keys"])
def test_cycles_are_refused(value: Any) -> None:
    with pytest.raises(NotSerializable, match="contains itself"):
        JsonSerializer().encode(value)


def test_cycle_path_points_at_the_repeat() -> None:
    d: dict[str, Any] = {"a": []}
    d["a"].append(d)
    with pytest.raises(NotSerializable) as caught:
        encode_call(JsonSerializer(), (d,), {})
    assert caught.value.path == "args[0]['a'][0]"


def test_shared_references_are_not_cycles() -> None:
    shared = [1, 2]
    s = JsonSerializer()
    assert s.decode(s.encode([shared, shared, {"x": shared}])) == [[1, 2]] * 2 + [{"x": [1, 2]}]


def test_deep_nesting_is_refused_not_a_recursion_error() -> None:
    deep: list[Any] = []
    for _ in range(10_000):
        deep = [deep]
    with pytest.raises(NotSerializable, match="nested too deeply"):
        JsonSerializer().encode(deep)


# --- size -----------------------------------------------------------------------


def test_default_limit_is_one_mib() -> None:
    assert DEFAULT_MAX_SIZE == 1_048_576
    assert JsonSerializer().max_size == PickleSerializer(KEY).max_size == 1_048_576


@pytest.mark.parametrize("make", [JsonSerializer, lambda n: PickleSerializer(KEY, n)])
def test_size_limit_at_and_just_over(make: Any) -> None:
    size = len(encode_call(make(None), ("x" * 1000,), {}))
    at_limit = make(size)
    assert decode_call(at_limit, encode_call(at_limit, ("x" * 1000,), {})) == (("x" * 1000,), {})
    with pytest.raises(PayloadTooLarge) as caught:
        encode_call(at_limit, ("x" * 1001,), {})
    error = caught.value
    assert (error.size, error.limit, error.path) == (size + 1, size, "arguments")
    assert f"{size + 1:,} bytes" in str(error)
    assert f"{size:,} bytes" in str(error)
    assert "pass a reference" in str(error)
    assert isinstance(error, NotSerializable)


def test_no_limit_with_none() -> None:
    s = JsonSerializer(max_size=None)
    big = "x" * (DEFAULT_MAX_SIZE + 10)
    assert decode_call(s, encode_call(s, (big,), {})) == ((big,), {})
    with pytest.raises(PayloadTooLarge):
        encode_call(JsonSerializer(), (big,), {})


def test_plain_encode_enforces_the_limit_too() -> None:
    with pytest.raises(PayloadTooLarge) as caught:
        JsonSerializer(max_size=10).encode("x" * 20, path="result")
    assert caught.value.path == "result"


def test_unencodable_beats_too_large_for_the_path() -> None:
    with pytest.raises(NotSerializable) as caught:
        encode_call(JsonSerializer(max_size=100), ("x" * 200, User(1)), {})
    assert type(caught.value) is NotSerializable
    assert caught.value.path == "args[1]"


@pytest.mark.parametrize("bad", [0, -1, 1.5, "1"])
def test_bad_max_size_is_a_configuration_error(bad: Any) -> None:
    with pytest.raises(ConfigurationError):
        JsonSerializer(max_size=bad)


# --- pickle -----------------------------------------------------------------------


def test_pickle_carries_what_json_cannot() -> None:
    s = PickleSerializer(KEY)
    user = s.decode(s.encode(User(5)))
    assert type(user) is User
    assert user.id == 5


def test_pickle_tampered_payload_is_rejected_wherever_the_flip() -> None:
    s = PickleSerializer(KEY)
    data = s.encode({"a": 1})
    for index in (0, 31, 32, len(data) - 1):
        tampered = bytearray(data)
        tampered[index] ^= 0x01
        with pytest.raises(PayloadRejected, match="OFFLOAD_PICKLE_KEY"):
            s.decode(bytes(tampered))


@pytest.mark.parametrize(
    "data",
    [
        pickle.dumps({"a": 1}, protocol=5),
        b"",
        b"short",
        PickleSerializer(KEY).encode({"a": 1})[:31],
        PickleSerializer(KEY).encode({"a": 1})[:-1],
        b"[[1],{}]",
    ],
    ids=["unsigned", "empty", "short", "half-signature", "truncated", "json"],
)
def test_pickle_unsigned_or_truncated_is_rejected(data: bytes) -> None:
    with pytest.raises(PayloadRejected, match="signature"):
        PickleSerializer(KEY).decode(data)


def test_pickle_wrong_key_is_rejected() -> None:
    data = PickleSerializer(b"a" * 16).encode([1, 2])
    with pytest.raises(PayloadRejected, match="same OFFLOAD_PICKLE_KEY"):
        PickleSerializer(b"b" * 16).decode(data)


def test_pickle_signed_but_unloadable_is_rejected() -> None:
    s = PickleSerializer(KEY)
    body = pickle.dumps(Point(1), protocol=5).replace(b"Point", b"Gonez")
    import hmac

    data = hmac.digest(KEY, body, "sha256") + body
    with pytest.raises(PayloadRejected, match="could not be loaded"):
        s.decode(data)


@pytest.mark.parametrize("key", [b"", b"x" * 15, "a-string-key-long-enough"])
def test_pickle_short_or_non_bytes_key_is_refused(key: Any) -> None:
    with pytest.raises(ConfigurationError, match="at least 16 bytes"):
        PickleSerializer(key)


def test_pickle_key_of_16_bytes_is_enough_and_not_shown() -> None:
    s = PickleSerializer(b"s3cr3t-s3cr3t-16")
    assert "s3cr3t" not in repr(s)


def test_pickle_unpicklable_names_the_argument() -> None:
    with pytest.raises(NotSerializable, match="cannot be pickled") as caught:
        encode_call(PickleSerializer(KEY), (1, threading.Lock()), {})
    assert caught.value.path == "args[1]"
    with pytest.raises(NotSerializable) as caught:
        PickleSerializer(KEY).encode(lambda: None)
    assert caught.value.path == "value"


# --- the errors themselves ------------------------------------------------------


@pytest.mark.parametrize(
    "error",
    [
        NotSerializable("args[1].user", "User", "a User object cannot be encoded"),
        PayloadTooLarge("arguments", "list", 2_000_000, 1_048_576),
        PayloadRejected("bad signature"),
    ],
)
def test_errors_survive_pickling(error: Exception) -> None:
    back = pickle.loads(pickle.dumps(error))
    assert type(back) is type(error)
    assert str(back) == str(error)
    assert vars(back) == vars(error)


def test_names() -> None:
    assert JsonSerializer().name == "json"
    assert PickleSerializer(KEY).name == "pickle"


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [
        ((5,), {}),
        (("x", 1.5, None, True, -(2**60)), {"a": 1, "b": "é"}),
        ((), {}),
        ((2**3000,), {}),  # a big int: tagged
        ((math.nan, math.inf), {}),  # tagged
        ((1,), {"__offload__": 1}),  # the tag key: escaped
        ((Level(1),), {}),  # an IntEnum is not an int
        ((1,), {"k": [1, 2]}),  # a container: walked
    ],
)
def test_plain_arguments_encode_to_the_same_bytes_as_the_walk(
    args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    # encode_call skips the walk for plain arguments: the bytes must not differ.
    serializer = JsonSerializer()
    data = encode_call(serializer, args, kwargs)
    assert data == serializer.encode([list(args), kwargs], path="arguments")
    decoded_args, decoded_kwargs = decode_call(serializer, data)
    assert repr(decoded_args) == repr(args) and decoded_kwargs == kwargs


def test_a_lone_surrogate_in_plain_arguments_still_names_the_argument() -> None:
    with pytest.raises(NotSerializable, match=r"args\[0\]"):
        encode_call(JsonSerializer(), ("\ud800",), {})


def test_plain_arguments_over_the_size_limit_are_refused() -> None:
    with pytest.raises(PayloadTooLarge):
        encode_call(JsonSerializer(max_size=10), ("x" * 20,), {})
