-- Jobs, and the indexes of the claim, lease and prune queries.
--
-- A migration is only ever appended, never edited: a released database has
-- run the old text. (SQLite keeps each CREATE statement's text, comments
-- inside it included, in sqlite_master.)

CREATE TABLE jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,  -- age order; never reused (fencing)
    id TEXT NOT NULL UNIQUE,
    task TEXT NOT NULL,
    queue TEXT NOT NULL,
    priority INTEGER NOT NULL DEFAULT 0,
    state TEXT NOT NULL CHECK (state IN
        ('queued', 'running', 'retrying', 'succeeded', 'failed', 'cancelled')),
    due REAL NOT NULL,  -- queued/retrying: claimable from; running: lease end
    eta REAL,
    attempt INTEGER NOT NULL DEFAULT 0,
    token INTEGER NOT NULL DEFAULT 0,
    max_deliveries INTEGER,
    key TEXT,
    timeout REAL,
    retries INTEGER,
    created REAL NOT NULL,
    payload BLOB,
    result_ttl REAL,
    meta TEXT,
    finished REAL,
    expires REAL,  -- when prune deletes it; NULL while live and for failed jobs
    result BLOB,
    error_type TEXT,
    error_message TEXT,
    error_traceback TEXT
);

-- The claim: per queue, highest priority, then earliest due, then age
-- (seq: the rowid, implicitly the last column of every index). A partial
-- index is only used by a query whose WHERE clause repeats its condition:
-- the live states are spelled exactly so in queries.sql.
CREATE INDEX jobs_claim ON jobs (queue, priority DESC, due)
    WHERE state IN ('queued', 'retrying', 'running');

-- Lapsed leases, for the dead-letter sweep of every claim: running jobs only.
CREATE INDEX jobs_lease ON jobs (due) WHERE state = 'running';

CREATE INDEX jobs_key ON jobs (key) WHERE key IS NOT NULL;

CREATE INDEX jobs_expires ON jobs (expires) WHERE expires IS NOT NULL;
