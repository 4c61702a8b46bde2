-- Recoverable keys: the plaintext sealed under a per-key data key, itself wrapped by a
-- master key that lives outside the database. NULL for ordinary keys.
ALTER TABLE keys ADD COLUMN sealed_key BLOB;
