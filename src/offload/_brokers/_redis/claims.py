"""The Redis broker's hot path: claims, acks, and both at once (``AckAndClaim``).

Each of the three is batched across a process's threads (``combine.py``):
threads that claim at once share one ``CLAIM`` call, threads that finish at
once one ``ACK``, and threads that finish and claim their successors at once
one ``ACK_CLAIM`` (``lua/ack_claim.lua``). A batch's claimed jobs are shared
out in the order of its calls, each call taking at most its own ``limit``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from ..._clock import Clock
from ..._errors import OffloadError
from ..._message import Delivery, Outcome, State
from .._base import stored_error
from . import rows, scripts
from .combine import Combiner
from .link import Arg

_T = TypeVar("_T")

Names = tuple[str, ...]
"""The queues of a claim as the script takes them: ("*",) for all, else "" and the names."""
_Claim = tuple[Names, int, float]  # names, limit, lease
_AckClaim = tuple[list[Arg], Names, int, float]  # ack values, names, limit, lease
_Both = tuple[bool, list[Delivery]]  # an ack's answer, and the claim's


class ClaimPath:
    """Claims, acks and ack-and-claims, each batched across threads.

    ``call`` runs an operation with the broker's retries (``RedisBroker._call``);
    ``holder`` says which registered worker claims ("" for none); ``batches``
    are ``RedisBroker``'s ``PROMOTE_BATCH``, ``PRUNE_EVERY`` and ``PRUNE_BATCH``.
    """

    def __init__(
        self,
        *,
        prefix: str,
        clock: Clock,
        result_ttl: float,
        lua: scripts.Scripts,
        call: Callable[[Callable[[bool], Any]], Any],
        holder: Callable[[], str],
        batches: tuple[int, float, int],
    ) -> None:
        self._prefix = prefix
        self._clock = clock
        self._result_ttl = result_ttl
        self._lua = lua
        self._call = call
        self._holder = holder
        self._promote_batch, self._prune_every, self._prune_batch = batches
        self._next_prune = 0.0
        self._claims: Combiner[_Claim, list[Delivery]] = Combiner(self._claim_together)
        self._acks: Combiner[list[Arg], bool] = Combiner(self._ack_together)
        self._both: Combiner[_AckClaim, _Both] = Combiner(self._ack_claim_together)
        self.idle: tuple[float, Names, bytes | None, bytes | None] | None = None
        """The last claim, if it emptied its queues: when (monotonic), its queues, the
        next due time, the next lease end."""

    def claim(self, names: Names, limit: int, lease: float) -> list[Delivery]:
        self._prune_now_and_then()
        return self._claims.submit((names, limit, lease))

    def ack(self, delivery: Delivery, outcome: Outcome) -> bool:
        return self._acks.submit(self._ack_values(delivery, outcome))

    def ack_and_claim(
        self, delivery: Delivery, outcome: Outcome, names: Names, limit: int, lease: float
    ) -> _Both:
        values = self._ack_values(delivery, outcome)
        if limit <= 0:
            return self._acks.submit(values), []
        self._prune_now_and_then()
        return self._both.submit((values, names, limit, lease))

    def claim_after(
        self, send: Callable[[list[Arg]], tuple[Any, Any]], names: Names, limit: int, lease: float
    ) -> tuple[Any, list[Delivery]]:
        """A claim whose ``CLAIM`` call ``send`` makes, given the script's arguments,
        behind a command of its own; that command's reply, and the deliveries.

        The claim's time (and so its lease end) is taken now, before ``send``.
        """
        self._prune_now_and_then()
        until, args = self._claim_args(names, limit, lease)
        first, found = send([self._prefix, *args])
        return first, self._deliveries(found, names, until)

    # -- the batches -------------------------------------------------------------

    def _claim_together(self, calls: list[_Claim]) -> list[list[Delivery] | BaseException]:
        """One ``CLAIM`` per kind of call (queues, lease), its jobs shared out in order."""
        answers: list[list[Delivery] | BaseException] = [[] for _ in calls]
        for (names, lease), indexes in _kinds(calls, lambda call: (call[0], call[2])).items():
            try:
                got = self._claim(names, sum(calls[i][1] for i in indexes), lease)
            except Exception as error:  # noqa: BLE001 - raised to each caller of this kind
                for index in indexes:
                    answers[index] = error
                continue
            for index in indexes:
                share = calls[index][1]
                answers[index], got = got[:share], got[share:]
        return answers

    def _claim(self, names: Names, limit: int, lease: float) -> list[Delivery]:
        until, args = self._claim_args(names, limit, lease)
        found = self._call(lambda _: self._lua.claim(args=[self._prefix, *args]))
        return self._deliveries(found, names, until)

    def _ack_together(self, acks: list[list[Arg]]) -> list[bool | BaseException]:
        """One ``ACK`` call for the batch; if it fails other than by an outage, one per ack.

        The script fails no ack for what a job's hash holds; what is left
        (a value that cannot be sent, say) then fails its own ack alone.
        """
        args: list[Arg] = [self._prefix]
        for values in acks:
            args += values
        try:
            return [bool(stored) for stored in self._call(lambda _: self._lua.ack(args=args))]
        except OffloadError:
            raise  # unreachable or refused: every ack of the batch alike
        except Exception:
            if len(acks) == 1:
                raise
        return [_alone(self._ack_together, [values]) for values in acks]

    def _ack_claim_together(self, calls: list[_AckClaim]) -> list[_Both | BaseException]:
        """One ``ACK_CLAIM`` per kind of call (queues, lease): its acks, then its claim.

        As in ``_ack_together``, a batch that fails other than by an outage
        is tried again a call at a time: sending it failed (nothing ran), or
        the script refused it before its first write.
        """
        answers: list[_Both | BaseException] = [ValueError("unanswered")] * len(calls)
        for (names, lease), indexes in _kinds(calls, lambda call: (call[1], call[3])).items():
            shares = self._ack_claim_kind([calls[i] for i in indexes], names, lease)
            for index, share in zip(indexes, shares, strict=True):
                answers[index] = share
        return answers

    def _ack_claim_kind(
        self, calls: list[_AckClaim], names: Names, lease: float
    ) -> Sequence[_Both | BaseException]:
        try:
            return self._ack_claim(calls, names, lease)
        except OffloadError as error:
            return [error] * len(calls)  # unreachable or refused: every call alike
        except Exception as error:  # noqa: BLE001 - that caller raises it
            if len(calls) == 1:
                return [error]
        return [_alone(self._ack_claim, [call], names, lease) for call in calls]

    def _ack_claim(self, calls: list[_AckClaim], names: Names, lease: float) -> list[_Both]:
        """One ``ACK_CLAIM`` call for ``calls`` (of one kind): each call's answer."""
        until, claim_args = self._claim_args(names, sum(call[2] for call in calls), lease)
        args: list[Arg] = [self._prefix, len(calls)]
        for call in calls:
            args += call[0]
        args += claim_args
        acked, found = self._call(lambda _: self._lua.ack_claim(args=args))
        got = self._deliveries(found, names, until)
        answers = []
        for stored, call in zip(acked, calls, strict=True):
            share = call[2]
            answers.append((bool(stored), got[:share]))
            got = got[share:]
        return answers

    # -- the rows -----------------------------------------------------------------

    def _claim_args(self, names: Names, limit: int, lease: float) -> tuple[float, list[Arg]]:
        """The lease end, and ``CLAIM``'s arguments after the prefix."""
        now = self._clock.now()
        until = now + lease
        return until, [repr(now), repr(until), limit, self._promote_batch, self._holder(), *names]

    def _deliveries(self, found: list[Any], names: Names, until: float) -> list[Delivery]:
        """``CLAIM``'s answer read; one that emptied the queues noted for the wait that
        may follow (what it would PROBE, as of now)."""
        width = scripts.CLAIMED
        if len(found) % width == scripts.IDLE:
            self.idle = (time.monotonic(), names, found[-2], found[-1])
            found = found[:-2]
        else:  # the queues may hold more: a wait must look again
            self.idle = None
        return [rows.delivery(found[i : i + width], until) for i in range(0, len(found), width)]

    def _ack_values(self, delivery: Delivery, outcome: Outcome) -> list[Arg]:
        return ack_values(delivery, outcome, self._clock.now(), self._result_ttl)

    def _prune_now_and_then(self) -> None:
        """A bounded batch of expired results, at most once per ``PRUNE_EVERY`` seconds."""
        now = self._clock.now()
        if now < self._next_prune:
            return
        self._next_prune = now + self._prune_every
        args: list[Arg] = [self._prefix, repr(now), self._prune_batch]
        if self._call(lambda _: int(self._lua.prune(args=args))) >= self._prune_batch:
            self._next_prune = now  # more are due: carry on at the next claim


def _alone(batch: Callable[..., Sequence[_T]], *args: Any) -> _T | BaseException:
    """The one answer of ``batch(*args)`` (a batch of one), or its error."""
    try:
        return batch(*args)[0]
    except Exception as error:  # noqa: BLE001 - this caller raises it
        return error


def _kinds(calls: Sequence[_T], kind: Callable[[_T], Any]) -> dict[Any, list[int]]:
    """The indexes of ``calls`` grouped by kind, in order."""
    kinds: dict[Any, list[int]] = {}
    for index, call in enumerate(calls):
        kinds.setdefault(kind(call), []).append(index)
    return kinds


def ack_values(delivery: Delivery, outcome: Outcome, now: float, default_ttl: float) -> list[Arg]:
    """One ack as ``ACK`` takes it: ``scripts.ACKED`` values."""
    message = delivery.message
    error = stored_error(outcome)
    ttl = default_ttl if message.result_ttl is None else message.result_ttl
    failed = outcome.state is State.FAILED  # the dead-letter set stays until purged
    return [
        job_id(delivery),
        delivery.token,
        outcome.state.value,
        repr(now),
        "" if failed else repr(now + ttl),
        "1" if ttl <= 0 and not failed else "0",
        "0" if outcome.payload is None else "1",
        outcome.payload or b"",
        rows.error_text(error),
    ]


def job_id(delivery: Delivery) -> str | bytes:
    """A delivery's job id as the scripts take it.

    A defect's id may have come from a key that is not UTF-8 (kept whole
    with surrogates by ``rows.delivery``): it goes back as the same bytes.
    """
    job_id = delivery.message.id
    return job_id if delivery.defect is None else job_id.encode("utf-8", "surrogateescape")
