-- IP allowlists (JSON arrays of CIDR networks; NULL for none) on keys, owners and
-- keyspaces: a verification must come from an address every one of them admits.
ALTER TABLE keys ADD COLUMN ip_allowlist TEXT;
ALTER TABLE owners ADD COLUMN ip_allowlist TEXT;
ALTER TABLE keyspaces ADD COLUMN ip_allowlist TEXT;
