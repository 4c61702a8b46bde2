-- A keyed check value of each pepper and master key version this database was used with
-- (HMAC under that secret of a fixed label), so a server given a missing or different
-- secret refuses to start instead of failing every key.
CREATE TABLE secret_checks (
    name        TEXT    NOT NULL,
    version     BIGINT  NOT NULL,
    check_value BYTEA   NOT NULL,
    created_at  BIGINT  NOT NULL,
    PRIMARY KEY (name, version)
);

-- Imported keys now keep their public part for display in its own column (their lookup
-- becomes a peppered tag).
ALTER TABLE keys ADD COLUMN import_public TEXT;
UPDATE keys SET import_public = substr(import_lookup, 3)
WHERE import_lookup LIKE 'p:%' OR import_lookup LIKE 'd:%';

-- Data upgrades that need a secret the SQL cannot see. `peppered-imports`: imported keys
-- that have not been verified since their import still hold their old system's plain
-- digest. Converting them to a peppered digest is an operator's explicit, one-time act
-- (`keyhaven migrate --upgrade-imports`), allowed only while this mark, set only when
-- such rows exist at migration time, is present. (Imported keys already on the native
-- verifier have their lookups converted by every start: that needs no mark.)
CREATE TABLE pending_upgrades (
    name TEXT PRIMARY KEY
);
INSERT INTO pending_upgrades (name)
SELECT 'peppered-imports' WHERE EXISTS (SELECT 1 FROM keys WHERE import_digest IS NOT NULL);
