-- Imported keys: found by a lookup string (public id, or a peppered tag of a digest)
-- instead of a key id, and checked against the digest their old system stored until their
-- first successful verify moves them to the native verifier (digest then cleared).
ALTER TABLE keys ADD COLUMN import_format TEXT;
ALTER TABLE keys ADD COLUMN import_lookup TEXT;
ALTER TABLE keys ADD COLUMN import_digest BLOB;
CREATE UNIQUE INDEX keys_by_import_lookup ON keys (import_lookup) WHERE import_lookup IS NOT NULL;
