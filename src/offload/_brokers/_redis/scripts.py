"""The Redis broker's Lua scripts: every state change is one, run atomically.

Redis runs a script to the end before any other command, so a script that
reads a job and then writes it cannot race another worker. Scripts never
read Redis's own clock: the caller passes its clock's ``now`` (so a test's
fake clock drives leases and ETAs), and times are passed and stored as the
caller's decimal strings (Lua would print numbers with 14 digits only).

The scripts live in ``lua/``, one file each, so the wheel carries them and
an editor sees Lua. A script's source is the helpers of ``lua/prelude.lua``
it uses, then its own file (nack and extend: ``fence.lua`` in between;
ack and claim: the file of their function, then the lines that run it, so
that ``ack_claim`` runs both functions), with each ``@NAME@`` replaced by
the value below that Python and Lua must agree on. A script that refuses
a call does so before its first write: Redis does not roll a script back.

Only the helpers a script calls (and what they call) go in front of it:
Redis runs a script's whole text on every call, and each ``local function``
is a closure made anew each time (the enqueue script used 7 of 21).
"""

from __future__ import annotations

import functools
import re

from ..._message import DEFAULT_MAX_DELIVERIES, State
from .. import _limit_math as limit_math
from .._files import read_text
from .link import Link, Script

RANK_LENGTH = 29
"""Characters before the job id in a ready set's member (due time and sequence)."""

WAKE_TOKENS = 16
"""At most this many wake-up tokens wait in a notification list."""

ENQUEUE_FIELDS = 10
"""Values per message in ``ENQUEUE``'s arguments (``rows.message_args``)."""

CLAIMED = 12
"""Values per job in ``CLAIM``'s answer (``rows.delivery``)."""

IDLE = 2
"""Values after the jobs in ``CLAIM``'s answer when it found fewer than asked for."""

ACKED = 9
"""Values per ack in ``ACK``'s arguments (``claims.ack_values``)."""

_VALUES = {
    "WAKE": str(WAKE_TOKENS),
    "STATES": "{" + ", ".join(f"'{state.value}'" for state in State) + "}",
    "FIELDS": str(ENQUEUE_FIELDS),
    "RANK": str(RANK_LENGTH),
    "CLAIMED": str(CLAIMED),
    "MAX_DELIVERIES": str(DEFAULT_MAX_DELIVERIES),
    "ACKED": str(ACKED),
    "MIN_WAIT": repr(limit_math.MIN_WAIT),
    "MAX_WAIT": repr(limit_math.MAX_WAIT),
    "FIRST_HOLD": repr(limit_math.FIRST_HOLD),
    "HOLD_WEIGHT": repr(limit_math.HOLD_WEIGHT),
}

_PARTS = {
    "enqueue": ("prelude", "enqueue"),
    "enqueue_one": ("prelude", "enqueue_one"),
    "claim": ("prelude", "claim", "claim_run"),
    "ack": ("prelude", "ack", "ack_run"),
    "ack_claim": ("prelude", "ack", "claim", "ack_claim"),
    "nack": ("prelude", "fence", "nack"),
    "extend": ("prelude", "fence", "extend"),
    "progress": ("prelude", "fence", "progress"),
    "step": ("prelude", "fence", "step"),
    "cancel": ("prelude", "cancel"),
    "retry": ("prelude", "retry"),
    "purge": ("prelude", "purge"),
    "prune": ("prelude", "prune"),
    "probe": ("prelude", "probe"),
    "fire": ("prelude", "fire"),
    "workers": ("prelude", "workers"),
    "limit_token": ("prelude", "limit_token"),
    "limit_slot": ("prelude", "limit_slot"),
    "limit_release": ("prelude", "limit_release"),
}
"""Each script, as the files its source is made of, in order."""

_PLACEHOLDER = re.compile(r"@([A-Z_]+)@")
_PACKAGE = __name__.rpartition(".")[0]  # where lua/ is, installed or not


_DEFINED = re.compile(r"^local (?:function )?([A-Za-z_]\w*)", re.MULTILINE)
_COMMENT = re.compile(r"--.*$", re.MULTILINE)
_IDENTIFIER = re.compile(r"[A-Za-z_]\w*")


def _needed(prelude: str, body: str) -> str:
    """The paragraphs of ``prelude`` that define what ``body`` uses, transitively, in order.

    A paragraph (lines between blank lines) that defines nothing (a comment)
    stays; one that defines names stays if ``body`` or a kept paragraph
    names one of them. Comments are left out of the search.
    """
    paragraphs, defines, uses = _paragraphs(prelude)
    wanted: set[str] = set()
    search = _names(body)
    while True:
        found = {name for names in defines for name in names if name in search} - wanted
        if not found:
            break
        wanted |= found
        search = set().union(*(u for u, names in zip(uses, defines, strict=True) if names & found))
    kept = [p for p, names in zip(paragraphs, defines, strict=True) if not names or names & wanted]
    return "\n\n".join(kept)


@functools.cache
def _paragraphs(text: str) -> tuple[list[str], list[set[str]], list[set[str]]]:
    """``text``'s paragraphs, with the names each defines and the names each uses."""
    paragraphs = text.strip().split("\n\n")
    defines = [set(_DEFINED.findall(paragraph)) for paragraph in paragraphs]
    return paragraphs, defines, [_names(paragraph) for paragraph in paragraphs]


def _names(text: str) -> set[str]:
    """The identifiers ``text`` names outside its comments."""
    return set(_IDENTIFIER.findall(_COMMENT.sub("", text)))


@functools.cache
def source(name: str) -> str:
    """The Lua text of the script ``name`` (a key of ``_PARTS``), as the server runs it."""
    first, *rest = _PARTS[name]
    body = "\n".join(read_text(_PACKAGE, f"lua/{part}.lua") for part in rest)
    text = _needed(read_text(_PACKAGE, f"lua/{first}.lua"), body) + "\n" + body

    def value(match: re.Match[str]) -> str:
        try:
            return _VALUES[match.group(1)]
        except KeyError:  # a typo in a .lua file: caught at the first load, not on a server
            raise ValueError(f"lua/{name}: no value for {match.group(0)}") from None

    return _PLACEHOLDER.sub(value, text)


class Scripts:
    """Every script, registered on a link (``claims``: the claim script's, if another):
    sent by ``EVALSHA``, loaded when the server lacks it.

    Making one reads the files (once per process) and computes their
    digests; it does not reach the server, so a broker can be built while
    its server is down.
    """

    def __init__(self, link: Link, *, claims: Link | None = None) -> None:
        def script(name: str) -> Script:
            return Script(link, source(name))

        self.enqueue, self.ack = script("enqueue"), script("ack")
        self.enqueue_one = script("enqueue_one")
        self.ack_claim = script("ack_claim")  # the acks' link: it is an ack first
        self.claim = Script(claims or link, source("claim"))  # a link of its own, if given
        self.nack, self.extend = script("nack"), script("extend")
        self.cancel, self.retry = script("cancel"), script("retry")
        self.purge, self.prune = script("purge"), script("prune")
        self.probe, self.progress = script("probe"), script("progress")
        self.step, self.fire = script("step"), script("fire")
        self.workers = script("workers")
        self.limit_token, self.limit_slot = script("limit_token"), script("limit_slot")
        self.limit_release = script("limit_release")
