"""The arithmetic of limits, shared by the brokers that keep them in rows or memory.

Redis runs the same steps in Lua (``_redis/lua/limit_*.lua``); the contract
suite holds every broker to the same answers.

Rates are GCRA (the generic cell rate algorithm): one number per limit, the
theoretical arrival time ``tat`` of the next call at the steady rate. A call
at ``now`` goes if ``tat - burst * interval <= now``, and pushes ``tat`` one
interval on. In any window of ``w`` seconds that lets at most
``w / interval + burst`` calls through, and it never accumulates more.

A refused caller is handed a turn: the time the next token is expected, or
the turn after the last one handed out if that is later. Successive refusals
thus come back spread one interval apart, as tokens come, instead of all at
the same instant to be refused again but one.

Concurrency slots are held by running jobs; each limit keeps the average
time a slot is held (``hold``), from which a refused caller's turn is
estimated: the earliest a holder is expected to finish (a holder that has
run past the average is expected to take as long again), then one average
hold divided by the number of slots per refusal already waiting.
"""

from __future__ import annotations

from collections.abc import Iterable

MIN_WAIT = 0.002
"""The shortest wait handed to a refused caller (seconds): never a busy loop."""

MAX_WAIT = 60.0
"""The longest: a turn further than this is asked for again then."""

FIRST_HOLD = 0.05
"""The hold assumed of a concurrency limit before one slot was ever released."""

HOLD_WEIGHT = 0.2
"""The weight of the newest hold in the moving average."""


def take_token(
    now: float, tat: float, turn: float, interval: float, burst: int
) -> tuple[float, float, float]:
    """One rate-limited call at ``now``: (wait, new tat, new turn); wait 0.0: it goes."""
    earliest = tat - burst * interval
    if earliest <= now:
        return 0.0, max(tat, now) + interval, turn
    expected = max(earliest, turn)
    wait = min(max(expected - now, MIN_WAIT), MAX_WAIT)
    return wait, tat, max(expected, now) + interval


def slot_wait(
    now: float, since: Iterable[float], limit: int, hold: float, turn: float
) -> tuple[float, float]:
    """For a caller refused a slot: (wait, new turn)."""
    hold = hold if hold > 0 else FIRST_HOLD
    # A holder past the average is expected to run as long again as it has.
    expected = min((start + max(hold, 2 * (now - start)) for start in since), default=now)
    expected = max(expected, turn, now + MIN_WAIT)
    wait = min(expected - now, MAX_WAIT)
    return wait, now + wait + hold / limit


def new_hold(hold: float, since: float, now: float) -> float:
    """The average hold after a slot held from ``since`` is released at ``now``."""
    held = max(0.0, now - since)
    if hold <= 0:
        return held
    return hold + HOLD_WEIGHT * (held - hold)
