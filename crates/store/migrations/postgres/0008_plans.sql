-- Plans: named templates of rate limits, a quota, scopes, roles, permissions and a
-- maximum key age, deployment-wide. Keys and owners name one (`plan`); what they set
-- themselves overrides it by name, and a plan edit reaches every key on it.
-- A key's or owner's quota counter taken from its plan is marked by
-- quota_refill_interval = 'plan': its refill is the plan's, read when the key is.
CREATE TABLE plans (
    name                  TEXT    NOT NULL PRIMARY KEY,
    description           TEXT,
    ratelimits            TEXT    NOT NULL DEFAULT '[]',
    quota_remaining       BIGINT,
    quota_refill_interval TEXT,
    quota_refill_day      BIGINT,
    quota_refill_amount   BIGINT,
    quota_refilled_at     BIGINT,
    scopes                TEXT    NOT NULL DEFAULT '[]',
    roles                 TEXT,
    permissions           TEXT,
    max_key_age_seconds   BIGINT,
    created_at            BIGINT  NOT NULL,
    updated_at            BIGINT  NOT NULL
);
ALTER TABLE keys ADD COLUMN plan TEXT REFERENCES plans (name);
ALTER TABLE owners ADD COLUMN plan TEXT REFERENCES plans (name);
CREATE INDEX keys_plan ON keys (plan) WHERE plan IS NOT NULL;
CREATE INDEX owners_plan ON owners (plan) WHERE plan IS NOT NULL;
