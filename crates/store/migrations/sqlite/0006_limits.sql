-- Rate limits and quotas. `ratelimits` holds a JSON array of named limits
-- ([{"name","limit","duration_ms","burst"?}]): a keyspace's are the defaults of its keys,
-- a key's override or add to them by name, an owner's are shared by all its keys.
-- A quota is a counter of remaining uses with an optional calendar refill; NULL
-- quota_remaining means no quota.
ALTER TABLE keyspaces ADD COLUMN ratelimits TEXT NOT NULL DEFAULT '[]';

ALTER TABLE owners ADD COLUMN ratelimits TEXT NOT NULL DEFAULT '[]';
ALTER TABLE owners ADD COLUMN quota_remaining INTEGER;
ALTER TABLE owners ADD COLUMN quota_refill_interval TEXT;
ALTER TABLE owners ADD COLUMN quota_refill_day INTEGER;
ALTER TABLE owners ADD COLUMN quota_refill_amount INTEGER;
ALTER TABLE owners ADD COLUMN quota_refilled_at INTEGER;

ALTER TABLE keys ADD COLUMN ratelimits TEXT NOT NULL DEFAULT '[]';
ALTER TABLE keys ADD COLUMN quota_remaining INTEGER;
ALTER TABLE keys ADD COLUMN quota_refill_interval TEXT;
ALTER TABLE keys ADD COLUMN quota_refill_day INTEGER;
ALTER TABLE keys ADD COLUMN quota_refill_amount INTEGER;
ALTER TABLE keys ADD COLUMN quota_refilled_at INTEGER;
