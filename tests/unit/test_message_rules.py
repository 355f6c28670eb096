"""The quick yes of ``message_problem`` (``_plainly_valid``) never contradicts its rules."""

from __future__ import annotations

import itertools
import math
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from offload._message import (
    MAX_COUNT,
    MAX_EPOCH,
    MAX_NAME,
    MAX_PRIORITY,
    Message,
    _plainly_valid,
    _rules_problem,
    message_problem,
)

# Values at and around every limit, of the right type and of wrong ones.
_names = st.one_of(
    st.text(max_size=MAX_NAME + 2),
    st.sampled_from(["", "a", "a" * MAX_NAME, "a" * (MAX_NAME + 1), "é" * 101, "a\x00", "\ud800"]),
    st.integers(),
    st.binary(max_size=4),
    st.none(),
)
_ints = st.one_of(
    st.integers(min_value=-2 * MAX_PRIORITY, max_value=2 * MAX_PRIORITY),
    st.sampled_from([0, 1, -1, MAX_COUNT, MAX_COUNT + 1, MAX_PRIORITY, -MAX_PRIORITY - 1]),
    st.booleans(),
    st.floats(allow_nan=True),
    st.text(max_size=3),
    st.none(),
)
_seconds = st.one_of(
    st.floats(min_value=-1.0, max_value=MAX_EPOCH * 2),
    st.sampled_from(
        [0.0, -0.0, MAX_EPOCH, math.nextafter(MAX_EPOCH, math.inf), math.nan, math.inf]
    ),
    st.integers(min_value=-1, max_value=2**40),
    st.booleans(),
    st.text(max_size=3),
    st.none(),
)
_optional = st.one_of(st.none(), _ints, _seconds, _names)


_FIELDS = {
    "task": _names,
    "queue": _names,
    "priority": _ints,
    "attempt": _ints,
    "created": _seconds,
    "max_deliveries": st.one_of(st.none(), _ints),
    "payload": st.one_of(st.none(), st.binary(max_size=3), st.text(max_size=3)),
    "meta": st.one_of(st.none(), st.just({}), st.just({"a": 1}), st.just({"a": "b"})),
    **dict.fromkeys(("eta", "key", "timeout", "retries", "result_ttl", "key_horizon"), _optional),
}


@st.composite
def _messages(draw: Any) -> Message:
    """A valid message with one to three fields drawn anywhere, near their limits mostly:
    a mistake in the quick yes shows where every other field is fine."""
    message = Message("01ab", "app.task", (), {}, "default", 0)
    message.created, message.max_deliveries, message.payload = 1.7e9, 10, b"[]"
    for field in draw(st.lists(st.sampled_from(sorted(_FIELDS)), min_size=1, max_size=3)):
        setattr(message, field, draw(_FIELDS[field]))
    return message


@settings(max_examples=1500, deadline=None)
@given(_messages())
def test_the_quick_yes_is_never_a_rule_s_no(message: Message) -> None:
    if _plainly_valid(message):
        problem = _rules_problem(message)
        assert problem is None, problem


_EDGES: list[Any] = [
    *("", "a", "a" * MAX_NAME, "a" * (MAX_NAME + 1), "é" * 100, "é" * 101, "a\x00", "\ud800"),
    *(0, 1, -1, MAX_COUNT, MAX_COUNT + 1, MAX_PRIORITY, MAX_PRIORITY + 1, -MAX_PRIORITY - 1),
    *(0.0, -0.0, 1.5, MAX_EPOCH, math.nextafter(MAX_EPOCH, math.inf), math.nan, math.inf),
    *(True, False, None, b"", b"x", {}, {"a": "b"}, {"a": 1}),
]


def test_no_field_at_any_edge_gets_a_quick_yes_the_rules_refuse() -> None:
    for field, value in itertools.product(sorted(_FIELDS), _EDGES):
        message = Message("01ab", "app.task", (), {}, "default", 0)
        message.created, message.max_deliveries, message.payload = 1.7e9, 10, b"[]"
        setattr(message, field, value)
        if _plainly_valid(message):
            assert _rules_problem(message) is None, (field, value)


def test_the_usual_message_gets_the_quick_yes() -> None:
    message = Message("01ab", "app.send_email", (), {}, "default", 0)
    message.created, message.max_deliveries, message.payload = 1.7e9, 10, b"[[1],{}]"
    assert _plainly_valid(message)
    assert message_problem(message) is None
