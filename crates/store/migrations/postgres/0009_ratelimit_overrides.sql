-- Overrides of standalone rate limits: within a namespace, identifiers matching
-- `identifier` (exactly, or as a pattern where `*` is any run of characters) get this
-- limit instead of the one a call names.
CREATE TABLE ratelimit_overrides (
    namespace    TEXT    NOT NULL,
    identifier   TEXT    NOT NULL,
    calls        BIGINT  NOT NULL,
    duration_ms  BIGINT  NOT NULL,
    burst        BIGINT,
    created_at   BIGINT  NOT NULL,
    updated_at   BIGINT  NOT NULL,
    PRIMARY KEY (namespace, identifier)
);
