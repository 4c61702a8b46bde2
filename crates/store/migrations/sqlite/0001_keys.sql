-- Keyhaven schema, version 1. Timestamps are Unix seconds (UTC). JSON columns hold
-- compact JSON text. No column ever holds a secret: `verifier` is the peppered HMAC.

CREATE TABLE keyspaces (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    id          TEXT    NOT NULL UNIQUE,
    name        TEXT    NOT NULL,
    prefix      TEXT    NOT NULL UNIQUE,
    -- 1 for the reserved keyspace that holds root keys; the admin API never shows it.
    reserved    INTEGER NOT NULL DEFAULT 0,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);

INSERT INTO keyspaces (id, name, prefix, reserved, created_at, updated_at)
VALUES ('ks_root', 'Keyhaven root keys', 'kh_root', 1, 0, 0);

CREATE TABLE owners (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    id           TEXT    NOT NULL UNIQUE,
    external_id  TEXT    NOT NULL UNIQUE,
    name         TEXT,
    meta         TEXT    NOT NULL DEFAULT '{}',
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL
);

CREATE TABLE keys (
    seq                INTEGER PRIMARY KEY AUTOINCREMENT,
    key_id             TEXT    NOT NULL UNIQUE,
    keyspace_id        TEXT    NOT NULL REFERENCES keyspaces (id),
    owner_id           TEXT    REFERENCES owners (id),
    name               TEXT,
    last4              TEXT    NOT NULL,
    pepper_version     INTEGER NOT NULL,
    verifier           BLOB    NOT NULL,
    scopes             TEXT    NOT NULL DEFAULT '[]',
    meta               TEXT    NOT NULL DEFAULT '{}',
    -- Root keys only: JSON array of keyspace ids this root key may act on; NULL = all.
    allowed_keyspaces  TEXT,
    enabled            INTEGER NOT NULL DEFAULT 1,
    expires_at         INTEGER,
    revoked_at         INTEGER,
    revoked_reason     TEXT,
    last_used_at       INTEGER,
    created_at         INTEGER NOT NULL,
    updated_at         INTEGER NOT NULL
);

CREATE INDEX keys_by_keyspace ON keys (keyspace_id, seq);
CREATE INDEX keys_by_owner ON keys (owner_id, seq);

CREATE TABLE audit_events (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    id           TEXT    NOT NULL UNIQUE,
    occurred_at  INTEGER NOT NULL,
    -- The root key id that made the change, or `cli` for the command line.
    actor        TEXT    NOT NULL,
    action       TEXT    NOT NULL,
    target_type  TEXT    NOT NULL,
    target_id    TEXT    NOT NULL,
    keyspace_id  TEXT,
    changes      TEXT    NOT NULL DEFAULT '{}',
    client_ip    TEXT
);

CREATE INDEX audit_events_by_target ON audit_events (target_id, seq);
CREATE INDEX audit_events_by_keyspace ON audit_events (keyspace_id, seq);

-- Responses to POST requests that carried an Idempotency-Key, sealed (AES-256-GCM under
-- a key derived from the pepper) because a key-creation response holds the new key.
CREATE TABLE idempotency_keys (
    actor            TEXT    NOT NULL,
    idempotency_key  TEXT    NOT NULL,
    request_hash     BLOB    NOT NULL,
    status           INTEGER NOT NULL,
    sealed_response  BLOB    NOT NULL,
    created_at       INTEGER NOT NULL,
    PRIMARY KEY (actor, idempotency_key)
);

CREATE TABLE usage_minutely (
    key_id   TEXT    NOT NULL,
    minute   INTEGER NOT NULL,
    outcome  TEXT    NOT NULL,
    count    INTEGER NOT NULL,
    PRIMARY KEY (key_id, minute, outcome)
) WITHOUT ROWID;
