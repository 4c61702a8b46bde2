-- Usage rollups, alert thresholds and episodes, webhooks with their outbox.
--
-- Usage is counted per key, per minute, per outcome (usage_minutely) and rolled up at
-- write time into hours and days, so a long range is read from a small table. Each
-- table is kept for its own retention (see docs/configuration.md).
CREATE TABLE usage_hourly (
    key_id   TEXT    NOT NULL,
    hour     INTEGER NOT NULL,
    outcome  TEXT    NOT NULL,
    count    INTEGER NOT NULL,
    PRIMARY KEY (key_id, hour, outcome)
) WITHOUT ROWID;

CREATE TABLE usage_daily (
    key_id   TEXT    NOT NULL,
    day      INTEGER NOT NULL,
    outcome  TEXT    NOT NULL,
    count    INTEGER NOT NULL,
    PRIMARY KEY (key_id, day, outcome)
) WITHOUT ROWID;

-- The anomaly judge reads closed minutes across all keys.
CREATE INDEX usage_minutely_by_minute ON usage_minutely (minute);
CREATE INDEX keys_by_last_used ON keys (last_used_at, seq);

-- Per-keyspace anomaly thresholds; NULL means the server's default.
ALTER TABLE keyspaces ADD COLUMN alert_spike_factor INTEGER;
ALTER TABLE keyspaces ADD COLUMN alert_spike_min_per_minute INTEGER;
ALTER TABLE keyspaces ADD COLUMN alert_failed_per_minute INTEGER;

-- One row per key and alert kind: the episode in progress (or the last one). A new
-- event is stored only when an episode starts.
CREATE TABLE alert_episodes (
    key_id        TEXT    NOT NULL,
    kind          TEXT    NOT NULL,
    started_at    INTEGER NOT NULL,
    last_seen_at  INTEGER NOT NULL,
    PRIMARY KEY (key_id, kind)
) WITHOUT ROWID;

CREATE INDEX events_by_key ON events (key_id, seq);

-- Whether the fan-out has made this event's deliveries. A flag, not a position in the
-- log: on PostgreSQL events can commit out of sequence order.
ALTER TABLE events ADD COLUMN fanned_out INTEGER NOT NULL DEFAULT 0;
UPDATE events SET fanned_out = 1;
CREATE INDEX events_to_fan_out ON events (seq) WHERE NOT fanned_out;

CREATE TABLE webhooks (
    seq            INTEGER PRIMARY KEY AUTOINCREMENT,
    id             TEXT    NOT NULL UNIQUE,
    url            TEXT    NOT NULL,
    description    TEXT,
    -- JSON array of event types; `["*"]` for all.
    event_types    TEXT    NOT NULL,
    -- Only events of this keyspace; NULL for all.
    keyspace_id    TEXT,
    enabled        INTEGER NOT NULL DEFAULT 1,
    -- The signing secret, sealed (AES-256-GCM under a key derived from the pepper).
    sealed_secret  BLOB    NOT NULL,
    -- Events stored after this sequence number are delivered to this endpoint.
    from_event_seq INTEGER NOT NULL,
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL
);

-- The outbox: one row per event and endpoint, made by the fan-out from `events`.
-- Times in milliseconds (retry delays can be shorter than a second).
CREATE TABLE webhook_deliveries (
    seq              INTEGER PRIMARY KEY AUTOINCREMENT,
    id               TEXT    NOT NULL UNIQUE,
    webhook_id       TEXT    NOT NULL,
    event_id         TEXT    NOT NULL,
    -- pending, delivered or failed (retries exhausted).
    status           TEXT    NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms  INTEGER NOT NULL,
    -- A worker holds the delivery until then (so two nodes never send it at once).
    locked_until_ms  INTEGER NOT NULL DEFAULT 0,
    -- When the first attempt was due: retries stop `webhook_retry_period` after it.
    first_due_ms     INTEGER NOT NULL,
    last_status      INTEGER,
    last_error       TEXT,
    delivered_at_ms  INTEGER,
    created_at       INTEGER NOT NULL,
    UNIQUE (webhook_id, event_id)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (status, next_attempt_ms);
CREATE INDEX webhook_deliveries_by_webhook ON webhook_deliveries (webhook_id, seq);

-- The delivery log: every attempt.
CREATE TABLE webhook_attempts (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    delivery_id   TEXT    NOT NULL,
    attempt       INTEGER NOT NULL,
    attempted_ms  INTEGER NOT NULL,
    status_code   INTEGER,
    error         TEXT,
    duration_ms   INTEGER NOT NULL
);
CREATE INDEX webhook_attempts_by_delivery ON webhook_attempts (delivery_id, seq);
