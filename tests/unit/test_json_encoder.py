"""The JSON serializer's encoder built once (``_json._dumps``): the bytes ``json`` writes."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from offload._serializers import JsonSerializer, _json, encode_call

_VALUES: list[Any] = [
    [[1, -2, 2**80, 0.1, 1e300, -0.0, True, False, None], {}],
    [["é", "\u2028", "\x00\x1f", '"\\', "\ud7ff"], {"k": "v", "ü": [1]}],
    {"nested": [{"a": [[], {}]}, "x" * 1000]},
    "a plain string",
    3.5,
]


@pytest.mark.parametrize("value", _VALUES)
def test_the_built_encoder_writes_what_json_dumps_writes(value: Any) -> None:
    expected = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    assert _json._dumps(value) == expected


def test_the_built_encoder_is_the_one_in_use_here() -> None:
    # CPython has a C encoder: the per-call set-up is skipped (else this test is moot).
    assert _json._dumps is not _json._ENCODER.encode
    assert encode_call(JsonSerializer(), (1, "é"), {"at": 2.5}) == b'[[1,"\xc3\xa9"],{"at":2.5}]'


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_the_built_encoder_refuses_what_is_not_json(bad: float) -> None:
    with pytest.raises(ValueError, match="not JSON compliant"):
        _json._dumps([bad])


def test_without_a_c_encoder_the_public_one_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(json.encoder, "c_make_encoder", None)
    assert _json._c_dumps() is None


def test_an_encoder_built_differently_is_not_used(monkeypatch: pytest.MonkeyPatch) -> None:
    def another_signature(*args: Any) -> Any:
        raise TypeError("make_encoder() takes 10 arguments")

    monkeypatch.setattr(json.encoder, "c_make_encoder", another_signature)
    assert _json._c_dumps() is None

    def other_bytes(*args: Any) -> Any:
        return lambda value, level: ("[1, 2]",)

    monkeypatch.setattr(json.encoder, "c_make_encoder", other_bytes)
    assert _json._c_dumps() is None


class _Number(int):
    pass


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [
        ((1, "a", None, True, 2.5), {}),
        ((math.nan,), {}),
        ((math.inf, 1), {}),
        ((1, 2**3000), {}),
        ((-(2**3000),), {}),
        ((_Number(3),), {}),
        ((1.0, [1, 2], (3,)), {}),
        ((), {"a": 1, "b": math.nan}),
        ((), {_json._TAG: "dict", "v": 1}),
        (("\ud800",), {}),
    ],
)
def test_a_call_encodes_as_the_walk_encodes_it(
    args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    # The plain path (no walk) must give the walk's bytes, or step aside for it.
    serializer = JsonSerializer()
    try:
        walked = serializer.encode([list(args), kwargs], path="arguments")
    except Exception as walk_error:  # the same error either way
        with pytest.raises(type(walk_error)):
            encode_call(serializer, args, kwargs)
        return
    assert encode_call(serializer, args, kwargs) == walked
