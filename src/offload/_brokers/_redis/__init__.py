"""A broker on a Redis server: any number of workers on any number of hosts.

>>> broker = RedisBroker.from_url("redis://localhost:6379/0", namespace="app1")

Every state change (enqueue, claim, ack, nack, extend, cancel, retry,
purge, prune) is one Lua script (``lua/``, loaded by ``scripts.py``): Redis runs it to
the end before any other command, so two workers can never claim one job
and a slow worker's ack cannot overwrite a newer attempt. Time comes from
the injected clock, passed into each script.

Keys, all under ``offload:<namespace>:`` so that apps sharing a server do
not see each other's jobs:

- ``job:<id>``: a hash per job. ``q`` queue, ``p`` priority, ``s`` state,
  ``a`` attempt, ``t`` token, ``lu`` lease end, ``eta``, ``k`` key, ``md``
  max_deliveries, ``ttl`` result_ttl, ``js`` enqueue sequence, ``r`` its
  member in the ready set, ``m`` the rest of the message (JSON: task,
  timeout, retries, created, meta), ``pl`` payload, ``fin`` finished,
  ``res`` result, ``err`` last error (JSON), ``dl`` deliveries when dead-
  lettered for lapsing, ``rt`` the reply channel of a producer that waits
  for it (see ``wait_for_results``), ``h`` the registered worker that
  claimed it last ("" for none), ``bad`` why a script found the job
  corrupt (its claim hands it over as a defect). The fields a script
  decides on are fields of their own; what only Python reads travels as
  one JSON field, which keeps the enqueue and claim scripts short.

  Anyone who reaches the server can change or delete a hash, and Redis can
  evict one: no script fails half-way on such a job (see ``lua/prelude.lua``),
  a claim hands it to the runner as a defect (dead-lettered alone, with the
  reason), and inspection shows what reads (``rows.py``).
- ``ready:<queue>``: a sorted set of claimable jobs, score ``-priority``,
  member ``<due µs><sequence><id>`` (fixed width): highest priority first,
  then earliest due, then first in. ``ZPOPMIN`` takes the best in order.
- ``delayed``: jobs waiting for an eta or a retry time, by due time;
  promoted to their ready set by the first claim after they come due.
- ``running``: leased jobs by lease end, rounded up to a whole second (a
  small sorted set parses a score that is not an integer on every insert);
  a claim moves lapsed ones back (or to the dead-letter set after
  ``max_deliveries``). The job's ``lu`` holds the exact end.
- ``st:<state>:<queue>``: each job once, in the index of its state, by
  enqueue sequence: counts (``ZCARD``) and newest-first listings.
- ``keys``: idempotency key -> id of the newest job with it. ``expiry``:
  finished jobs by the time their result expires. ``queues``: queue names,
  where a worker for all queues finds them (an enqueue lists its queue at
  most once a second per broker object: ``RedisBroker.REGISTER_EVERY``).
  ``seq``: a counter for ordering and fencing tokens (unique across jobs).
  ``fin``: a counter of finished jobs (``RedisInspector.change_token``).
  ``schedules``: periodic schedule name -> "<last fire time> <job id>",
  advanced compare-and-set by ``lua/fire.lua`` (``RedisSchedules``).
- ``wake:<queue>`` and ``wake``: short lists an enqueue pushes a token
  into; idle workers wait on them with ``BLPOP`` (no polling), their claim
  sent behind it on the same connection (``wait_and_claim``).
  ``interrupt:<uuid>``, one per broker object: ``interrupt()`` pushes there.
- ``workers``: live workers' ids by the time their heartbeat lapses;
  ``worker:<id>``: each one's entry (JSON), with a key expiry as a backstop
  (``workers.py``, ``lua/workers.lua``).
- ``done:<uuid>``: a pub/sub channel per broker object, where acks publish
  the outcome of the jobs it enqueued while it listened.
- ``limit:<name>`` and ``slots:<name>``: a rate or concurrency limit
  (``limits.py``, ``lua/limit_*.lua``): a hash of its ``tat``, ``turn`` and
  ``hold``, and a hash of the jobs holding its slots (id -> since). A limit's
  hash expires an hour after it last mattered (on Redis's clock: it only
  forgets an idle limit).

The state changes go through one connection per broker object that its
threads share (``link.py``), and claims through a second one (a worker's
dispatcher claiming just before it waits never holds up an ack): concurrent
acks become one ``ACK`` call, concurrent claims one ``CLAIM``, concurrent
acks that claim their successors (``AckAndClaim``) one ``ACK_CLAIM``, and
whatever else meets shares a round trip (``combine.py``). A producer's reply channel
has a connection of its own (``feed.py``), which a thread blocked on a
result reads itself.

Results are kept ``result_ttl`` seconds by pruning (the ``expiry`` index),
not by Redis key expiry: the indexes must forget a job together with its
hash, and expiry runs on Redis's clock, not the injected one.

Durability is Redis's: a Redis without an append-only file loses what it
held when it restarts. Run it with ``appendonly yes`` (and ``appendfsync
always`` to lose nothing even on a power cut). A Redis Cluster is not
supported (scripts derive their keys); a single server or Sentinel is.

The modules: ``broker`` (``RedisBroker``: enqueue, claim, ack, nack,
extend, wake-ups, the result feed), ``claims`` (its claims, acks and
acks-with-claims, each batched across threads), ``inspector``
(``RedisInspector``, its ``broker.inspector``), ``limits`` (``RedisLimits``, its ``broker.limits``),
``link`` (connections), ``combine`` (group commit), ``feed`` (the reply
channel), ``scripts`` and ``lua/`` (the state changes), ``rows`` (what
scripts take and return, and job hashes decoded).
"""

from __future__ import annotations

from .broker import RedisBroker
from .inspector import RedisInspector

__all__ = ["RedisBroker", "RedisInspector"]
