-- Overrides of standalone rate limits: within a namespace, identifiers matching
-- `identifier` (exactly, or as a pattern where `*` is any run of characters) get this
-- limit instead of the one a call names.
CREATE TABLE ratelimit_overrides (
    namespace    TEXT    NOT NULL,
    identifier   TEXT    NOT NULL,
    calls        INTEGER NOT NULL,
    duration_ms  INTEGER NOT NULL,
    burst        INTEGER,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    PRIMARY KEY (namespace, identifier)
);
