-- The strength of the secrets of a keyspace's new keys: 22 bytes (30 base58 characters,
-- ~175 bits; the default) or 32 (44 characters, ~257 bits). Existing keys keep theirs.
ALTER TABLE keyspaces ADD COLUMN secret_bytes INTEGER NOT NULL DEFAULT 22;
