"""The JSON serializer's short cuts: the encoder built once (``_dumps``), the scanner called
first (``_loads``), the plain call (``plain_call``): what ``json`` and the walk would give."""

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


@pytest.mark.parametrize(
    "text",
    [
        '[[1,"a"],{}]',
        " [1]",
        "[1] ",
        "\n[1]\n",
        "[1]x",
        "[1][2]",
        "",
        " ",
        "[1,",
        '{"a":}',
        "nul",
        '"\\ud800"',
        '{"__offload__":"tuple","v":[1,2]}',
        '{"__offload__":"nope","v":1}',
    ],
)
def test_loads_reads_or_refuses_as_decode_does(text: str) -> None:
    decoder = json.JSONDecoder(object_hook=_json._untagger(lambda module: False))
    fast = _json._loads(decoder)
    assert fast is not decoder.decode, "the scanner is there to call on CPython"
    try:
        expected = decoder.decode(text)
    except Exception as error:  # the same error, with the same message
        with pytest.raises(type(error)) as raised:
            fast(text)
        assert str(raised.value) == str(error)
        return
    assert fast(text) == expected
