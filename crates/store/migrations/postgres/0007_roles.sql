-- Roles: named sets of permissions, per keyspace. Keys and owners name roles and carry
-- permissions of their own (JSON arrays; NULL for none); a verification may ask for
-- permissions with a query (`a AND (b OR c)`).
CREATE TABLE roles (
    keyspace_id  TEXT    NOT NULL REFERENCES keyspaces (id),
    name         TEXT    NOT NULL,
    description  TEXT,
    permissions  TEXT    NOT NULL DEFAULT '[]',
    created_at   BIGINT  NOT NULL,
    updated_at   BIGINT  NOT NULL,
    PRIMARY KEY (keyspace_id, name)
);
ALTER TABLE keys ADD COLUMN roles TEXT;
ALTER TABLE keys ADD COLUMN permissions TEXT;
ALTER TABLE owners ADD COLUMN roles TEXT;
ALTER TABLE owners ADD COLUMN permissions TEXT;
