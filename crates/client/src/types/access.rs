//! What a key may do beyond its own settings: a keyspace's roles (named sets of
//! permissions) and the deployment's plans (settings every key or owner on them shares),
//! with the field names and required fields of `docs/openapi.json` (a test compares).

use serde::{Deserialize, Serialize};

use super::admin::{Quota, RateLimit};

/// A role of a keyspace: keys and owners given it hold its permissions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleView {
    pub keyspace_id: String,
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    pub permissions: Vec<String>,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateRole {
    /// Unique in the keyspace: 1-100 characters of `[A-Za-z0-9_.:-]`.
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// At most 64.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub permissions: Vec<String>,
}

impl CreateRole {
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            ..Self::default()
        }
    }
}

/// A change to a role: fields left `None` stay as they are; `Some(None)` clears.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateRole {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<Option<String>>,
    /// Replaces the permissions (every key with the role holds the new ones).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permissions: Option<Vec<String>>,
}

/// A plan: rate limits, a quota template, scopes, roles and permissions that every key
/// (or owner) on it gets where it has none of its own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanView {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    pub ratelimits: Vec<RateLimit>,
    /// What a counter starts from when a key or owner joins the plan, and its refill.
    #[serde(default)]
    pub quota: Option<Quota>,
    pub scopes: Vec<String>,
    pub roles: Vec<String>,
    pub permissions: Vec<String>,
    #[serde(default)]
    pub max_key_age_seconds: Option<i64>,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreatePlan {
    /// Unique in the deployment: 1-100 characters of `[A-Za-z0-9_.:-]`.
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// At most 16; a key's or owner's own limit of the same name overrides one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ratelimits: Vec<RateLimit>,
    /// What each key or owner joining the plan without a quota of its own starts with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota: Option<Quota>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
    /// Roles by name, resolved in each key's keyspace.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub permissions: Vec<String>,
    /// Keys on the plan stop verifying this many seconds after their creation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_key_age_seconds: Option<i64>,
}

impl CreatePlan {
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            ..Self::default()
        }
    }
}

/// A change to a plan: fields left `None` stay as they are; `Some(None)` clears, and
/// `Some(vec![])` empties a list.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdatePlan {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<Option<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ratelimits: Option<Vec<RateLimit>>,
    /// `Some(None)` removes the quota template (counters taken from the plan end).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota: Option<Option<Quota>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scopes: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roles: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permissions: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_key_age_seconds: Option<Option<i64>>,
}
