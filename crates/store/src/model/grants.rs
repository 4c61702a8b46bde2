//! What keys and owners are given besides their own settings: a plan, roles and
//! permissions (names), and the plans and roles those names refer to.

use super::{Limits, Timestamp};

/// The plan, roles and permissions given to a key or an owner (names; empty for none).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grants {
    /// The plan the key or owner is on: its limits, quota, scopes, roles, permissions
    /// and maximum key age apply unless the key or owner sets its own (by name).
    pub plan: Option<String>,
    pub roles: Vec<String>,
    pub permissions: Vec<String>,
}

/// A plan: a named, deployment-wide template of what keys and owners on it get. What a
/// key or owner sets itself overrides the plan's (rate limits by name, the quota as a
/// whole); scopes, roles and permissions add up; the shorter maximum key age wins.
/// Editing a plan changes every key on it (and every key of every owner on it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub name: String,
    pub description: Option<String>,
    /// Rate limits and quota. The quota's `remaining` is what a counter starts from
    /// when a key or owner joins the plan; its refill applies to every such counter.
    pub limits: Limits,
    pub scopes: Vec<String>,
    /// Roles (resolved in each key's keyspace) and permissions.
    pub grants: Grants,
    /// Caps the expiry of every key on the plan at `created_at + max_key_age`.
    pub max_key_age: Option<i64>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// A role: a named set of permissions in a keyspace. Editing it changes what every key
/// naming it (or whose owner names it) holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Role {
    pub keyspace_id: String,
    pub name: String,
    pub description: Option<String>,
    pub permissions: Vec<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}
