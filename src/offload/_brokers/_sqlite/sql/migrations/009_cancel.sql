-- Migration 9: a running job someone asked to cancel (offload cancel,
-- handle.cancel()): when it was asked. The worker running it hears it when
-- it next renews the lease (extend), and records the job cancelled.

ALTER TABLE jobs ADD COLUMN cancel_requested REAL;
