-- A keyed check value of each pepper and master key version this database was used with
-- (HMAC under that secret of a fixed label), so a server given a missing or different
-- secret refuses to start instead of failing every key.
CREATE TABLE secret_checks (
    name        TEXT    NOT NULL,
    version     INTEGER NOT NULL,
    check_value BLOB    NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (name, version)
);

-- Data upgrades that need a secret the SQL cannot see, done once by the next server start.
-- `peppered-imports`: imported keys stored their old system's plain digest and were found
-- by unpeppered lookups; they move to a peppered digest and peppered lookups. Marked only
-- when such rows exist now, so rows written later in the old shape are never converted.
CREATE TABLE pending_upgrades (
    name TEXT PRIMARY KEY
);
INSERT INTO pending_upgrades (name)
SELECT 'peppered-imports' WHERE EXISTS (SELECT 1 FROM keys WHERE import_digest IS NOT NULL);
