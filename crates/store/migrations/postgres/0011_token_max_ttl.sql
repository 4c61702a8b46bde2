-- Longest lifetime of a signed token minted from a key of the keyspace (NULL: the
-- default, 15 minutes).
ALTER TABLE keyspaces ADD COLUMN token_max_ttl_seconds BIGINT;
