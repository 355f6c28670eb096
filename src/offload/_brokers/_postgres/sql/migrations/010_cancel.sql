-- Migration 10: a running job someone asked to cancel (offload cancel,
-- handle.cancel()): when it was asked. The worker running it hears it when
-- it next renews the lease (extend), and records the job cancelled. A
-- nullable column without a default: adding it rewrites nothing.

ALTER TABLE {s}.jobs ADD COLUMN cancel_requested double precision;
