-- What a keyspace does with a key reported as leaked: `revoke` (NULL), `disable`, `notify`.
ALTER TABLE keyspaces ADD COLUMN leak_policy TEXT;

-- Keys reported as leaked, one row per key: the first report acts, repeats change nothing.
CREATE TABLE key_leaks (
    key_id      TEXT    PRIMARY KEY,
    source      TEXT    NOT NULL,
    url         TEXT,
    action      TEXT    NOT NULL,
    reported_at BIGINT  NOT NULL
);

-- SHA-256 of each signed batch a secret scanner (GitHub) delivered, so a replayed batch
-- is refused. Purged with the idempotency records.
CREATE TABLE leak_batches (
    digest  BYTEA   PRIMARY KEY,
    seen_at BIGINT  NOT NULL
);
CREATE INDEX leak_batches_seen ON leak_batches (seen_at);
