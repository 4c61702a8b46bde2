-- Per-keyspace lifecycle policy, and stored lifecycle events (webhook delivery reads
-- them later). A key's effective expiry is the earlier of its expires_at and
-- created_at + max_key_age_seconds.
ALTER TABLE keyspaces ADD COLUMN max_key_age_seconds INTEGER;
ALTER TABLE keyspaces ADD COLUMN default_grace_seconds INTEGER;
ALTER TABLE keyspaces ADD COLUMN expiry_warning_seconds INTEGER;

CREATE TABLE events (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    id           TEXT    NOT NULL UNIQUE,
    type         TEXT    NOT NULL,
    key_id       TEXT,
    keyspace_id  TEXT,
    payload      TEXT    NOT NULL DEFAULT '{}',
    -- One event per fact: e.g. `key.expiring:<key id>:<expiry>`.
    dedup        TEXT    NOT NULL UNIQUE,
    created_at   INTEGER NOT NULL
);
CREATE INDEX events_by_type ON events (type, seq);
