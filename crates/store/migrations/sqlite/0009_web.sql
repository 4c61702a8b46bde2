-- People who use the dashboard. `password_hash` is an Argon2id PHC string.
CREATE TABLE operators (
    id            TEXT    PRIMARY KEY,
    email         TEXT    NOT NULL UNIQUE,
    role          TEXT    NOT NULL,
    password_hash TEXT    NOT NULL,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);

-- Browser sessions of the dashboard (`operator`) and the customer portal (`portal`), and
-- the portal's single-use links (`portal_link`). Only a SHA-256 of each cookie or link
-- token is kept. `grants` is JSON: what a portal session may see and do.
CREATE TABLE web_sessions (
    token_hash   BLOB    PRIMARY KEY,
    kind         TEXT    NOT NULL,
    subject      TEXT    NOT NULL,
    grants       TEXT    NOT NULL,
    created_at   INTEGER NOT NULL,
    last_seen_at INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL
);
CREATE INDEX web_sessions_subject ON web_sessions (kind, subject);
CREATE INDEX web_sessions_expiry ON web_sessions (expires_at);

-- Sign-in attempts, one row per bucket (`email:<address>`, `ip:<address>`), counted over a
-- sliding window to throttle guessing on every node. An attempt is written before its
-- password is checked (so parallel guesses count) and removed if it succeeds.
CREATE TABLE login_failures (
    attempt TEXT   NOT NULL,
    bucket TEXT    NOT NULL,
    at     INTEGER NOT NULL
);
CREATE INDEX login_failures_bucket ON login_failures (bucket, at);

-- How the customer portal looks for a keyspace's customers (JSON, optional).
ALTER TABLE keyspaces ADD COLUMN branding TEXT;
