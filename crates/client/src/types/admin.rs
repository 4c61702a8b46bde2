//! The admin API's shapes: keyspaces, keys, owners, usage and the audit log, with the
//! field names and required fields of `docs/openapi.json` (a test compares them).
//! Timestamps are RFC 3339 strings, as on the wire. Objects the client only passes
//! through (a keyspace's alert thresholds and portal branding, an audit event's
//! changes) are JSON values.

use std::collections::BTreeMap;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A page of a list: `{data, next_cursor}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct List<T> {
    pub data: Vec<T>,
    /// Pass as `cursor` for the next page; `None` on the last one.
    #[serde(default)]
    pub next_cursor: Option<String>,
}

/// A named rate limit: `limit` units per `duration_ms`, with an optional burst.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLimit {
    pub name: String,
    pub limit: u64,
    pub duration_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u64>,
}

impl RateLimit {
    pub fn new(name: impl Into<String>, limit: u64, duration_ms: u64) -> Self {
        Self {
            name: name.into(),
            limit,
            duration_ms,
            burst: None,
        }
    }
}

/// A quota of uses, as set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quota {
    pub remaining: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refill: Option<Refill>,
}

/// How a quota refills: `daily` or `monthly` (on `day`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refill {
    pub interval: String,
    pub amount: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub day: Option<u8>,
}

/// A quota as shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuotaView {
    pub remaining: u64,
    pub refilled_at: String,
    #[serde(default)]
    pub next_refill_at: Option<String>,
    #[serde(default)]
    pub refill: Option<Refill>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyspaceView {
    pub id: String,
    pub name: String,
    pub prefix: String,
    pub ratelimits: Vec<RateLimit>,
    pub alerts: Value,
    pub branding: Value,
    /// `revoke`, `disable` or `notify`.
    pub leak_policy: String,
    #[serde(default)]
    pub max_key_age_seconds: Option<i64>,
    #[serde(default)]
    pub default_grace_seconds: Option<i64>,
    #[serde(default)]
    pub expiry_warning_seconds: Option<i64>,
    /// New keys' secret strength: 22 bytes (30 characters) or 32 (44); 22 from servers
    /// that predate the setting.
    #[serde(default = "standard_secret_bytes")]
    pub secret_bytes: u8,
    /// Longest lifetime of a signed token minted from one of its keys; 900 from servers
    /// that predate the setting.
    #[serde(default = "default_token_max_ttl")]
    pub token_max_ttl_seconds: i64,
    /// Networks (CIDR) the keys may be used from; empty for any address.
    #[serde(default)]
    pub ip_allowlist: Vec<String>,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CreateKeyspace {
    pub name: String,
    /// 1-20 characters `[a-z][a-z0-9_]*`, unique.
    pub prefix: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_key_age_seconds: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_grace_seconds: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiry_warning_seconds: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ratelimits: Vec<RateLimit>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alerts: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branding: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leak_policy: Option<String>,
    /// Networks (CIDR) or addresses the keys may be used from; at most 100.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ip_allowlist: Vec<String>,
    /// 22 (default) or 32: the strength of new keys' secrets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_bytes: Option<u8>,
    /// Longest lifetime of a signed token minted from its keys: 60 s to a day (default
    /// 900).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_max_ttl_seconds: Option<i64>,
}

impl CreateKeyspace {
    pub fn new(name: impl Into<String>, prefix: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            prefix: prefix.into(),
            ..Self::default()
        }
    }
}

/// A change to a keyspace: fields left `None` stay as they are; `Some(None)` clears.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UpdateKeyspace {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_key_age_seconds: Option<Option<i64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_grace_seconds: Option<Option<i64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiry_warning_seconds: Option<Option<i64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ratelimits: Option<Vec<RateLimit>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alerts: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branding: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leak_policy: Option<String>,
    /// Replaces the IP allowlist; `Some(vec![])` removes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_allowlist: Option<Vec<String>>,
    /// 22 or 32: the secret strength of keys created or rotated from now on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_bytes: Option<u8>,
    /// 60 s to a day; `Some(None)` restores the default (900).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_max_ttl_seconds: Option<Option<i64>>,
}

/// A key as the API shows it: never the secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyView {
    pub key_id: String,
    pub keyspace_id: String,
    /// `acme_live_7Gx9QbWkP2mZ_…aB3c`: identifies the key without revealing it.
    pub start: String,
    #[serde(default)]
    pub owner_id: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    pub scopes: Vec<String>,
    pub meta: Map<String, Value>,
    pub enabled: bool,
    pub recoverable: bool,
    pub ratelimits: Vec<RateLimit>,
    #[serde(default)]
    pub quota: Option<QuotaView>,
    #[serde(default)]
    pub expires_at: Option<String>,
    #[serde(default)]
    pub revoked_at: Option<String>,
    #[serde(default)]
    pub revoked_reason: Option<String>,
    #[serde(default)]
    pub rotated_from: Option<String>,
    #[serde(default)]
    pub rotated_to: Option<String>,
    #[serde(default)]
    pub grace_until: Option<String>,
    #[serde(default)]
    pub import_format: Option<String>,
    #[serde(default)]
    pub last_used_at: Option<String>,
    /// Networks (CIDR) the keys may be used from; empty for any address.
    #[serde(default)]
    pub ip_allowlist: Vec<String>,
    /// Roles given to it (see the keyspace's roles).
    #[serde(default)]
    pub roles: Vec<String>,
    /// Permissions given directly.
    #[serde(default)]
    pub permissions: Vec<String>,
    /// The plan it is on (`/v1/plans`), if any.
    #[serde(default)]
    pub plan: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

/// A new key (from create or rotate): its plaintext, shown this once, and its record.
/// `Debug` shows the key as `[REDACTED]`.
#[derive(Debug, Deserialize)]
pub struct CreatedKey {
    /// The plaintext key: hand it to its owner, then let it go.
    pub key: SecretString,
    #[serde(flatten)]
    pub view: KeyView,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CreateKey {
    pub keyspace_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub meta: Map<String, Value>,
    /// RFC 3339, in the future.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recoverable: Option<bool>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ratelimits: Vec<RateLimit>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota: Option<Quota>,
    /// Networks (CIDR) or addresses the keys may be used from; at most 100.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ip_allowlist: Vec<String>,
    /// Roles (of the key's keyspace) to give; at most 64.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    /// Permissions to give directly; at most 64.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub permissions: Vec<String>,
    /// The plan (`/v1/plans`) to put it on: its settings apply where none of its own do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<String>,
}

impl CreateKey {
    pub fn new(keyspace_id: impl Into<String>) -> Self {
        Self {
            keyspace_id: keyspace_id.into(),
            ..Self::default()
        }
    }
}

/// A change to a key: fields left `None` stay as they are; `Some(None)` clears.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UpdateKey {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_id: Option<Option<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<Option<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scopes: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<Map<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Option<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ratelimits: Option<Vec<RateLimit>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota: Option<Option<Quota>>,
    /// Replaces the IP allowlist; `Some(vec![])` removes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_allowlist: Option<Vec<String>>,
    /// Replaces the roles; `Some(vec![])` removes them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roles: Option<Vec<String>>,
    /// Replaces the direct permissions; `Some(vec![])` removes them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permissions: Option<Vec<String>>,
    /// Moves it to another plan; `Some(None)` takes it off its plan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<Option<String>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevokeKey {
    /// For the audit log and the key's record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RotateKey {
    /// How long the old key keeps verifying (default: the keyspace's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grace_period_seconds: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OwnerView {
    pub id: String,
    pub external_id: String,
    #[serde(default)]
    pub name: Option<String>,
    pub meta: Map<String, Value>,
    pub ratelimits: Vec<RateLimit>,
    #[serde(default)]
    pub quota: Option<QuotaView>,
    /// Networks (CIDR) the keys may be used from; empty for any address.
    #[serde(default)]
    pub ip_allowlist: Vec<String>,
    /// Roles given to it (see the keyspace's roles).
    #[serde(default)]
    pub roles: Vec<String>,
    /// Permissions given directly.
    #[serde(default)]
    pub permissions: Vec<String>,
    /// The plan it is on (`/v1/plans`), if any.
    #[serde(default)]
    pub plan: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CreateOwner {
    /// Your own id for this customer.
    pub external_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub meta: Map<String, Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ratelimits: Vec<RateLimit>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota: Option<Quota>,
    /// Networks (CIDR) or addresses the keys may be used from; at most 100.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ip_allowlist: Vec<String>,
    /// Roles (of the key's keyspace) to give; at most 64.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    /// Permissions to give directly; at most 64.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub permissions: Vec<String>,
    /// The plan (`/v1/plans`) to put it on: its settings apply where none of its own do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<String>,
}

impl CreateOwner {
    pub fn new(external_id: impl Into<String>) -> Self {
        Self {
            external_id: external_id.into(),
            ..Self::default()
        }
    }
}

/// A change to an owner: fields left `None` stay as they are; `Some(None)` clears.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UpdateOwner {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<Option<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<Map<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ratelimits: Option<Vec<RateLimit>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota: Option<Option<Quota>>,
    /// Replaces the IP allowlist; `Some(vec![])` removes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_allowlist: Option<Vec<String>>,
    /// Replaces the roles; `Some(vec![])` removes them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roles: Option<Vec<String>>,
    /// Replaces the direct permissions; `Some(vec![])` removes them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permissions: Option<Vec<String>>,
    /// Moves it to another plan; `Some(None)` takes it off its plan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<Option<String>>,
}

/// Verifications over time, by outcome, in buckets of `granularity`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageSeries {
    pub granularity: String,
    pub from: String,
    pub to: String,
    pub data: Vec<Bucket>,
    pub total: u64,
    /// Per outcome (`VALID`, `REVOKED`, …) over the whole range.
    pub totals: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bucket {
    pub start: String,
    pub total: u64,
    pub counts: BTreeMap<String, u64>,
}

/// Totals per key over a range (`GET /v1/keys/usage`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageTotals {
    pub granularity: String,
    pub from: String,
    pub to: String,
    pub data: Vec<KeyTotals>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyTotals {
    pub key_id: String,
    pub total: u64,
    pub counts: BTreeMap<String, u64>,
    #[serde(default)]
    pub last_used_at: Option<String>,
}

/// One audited change: who did what to which object, with the change itself (secrets
/// never appear in it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEventView {
    pub id: String,
    pub occurred_at: String,
    pub actor: String,
    pub action: String,
    pub target_type: String,
    pub target_id: String,
    pub changes: Value,
    #[serde(default)]
    pub client_ip: Option<String>,
    #[serde(default)]
    pub keyspace_id: Option<String>,
}

/// Paging of a list: `limit` (1-500, default 50) and the previous page's `next_cursor`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Page {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

/// The filters of `GET /v1/keys`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct KeyFilter {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keyspace_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner_id: Option<String>,
    /// `created` (default) or `last_used`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sort: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub search: Option<String>,
    /// `active`, `disabled`, `expired` or `revoked`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    #[serde(flatten)]
    pub page: Page,
}

/// The filters of `GET /v1/audit-events`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AuditFilter {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keyspace_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// RFC 3339; events at or after.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// RFC 3339; events before.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
    #[serde(flatten)]
    pub page: Page,
}

/// The range of a usage series: RFC 3339 `from`/`to`, `granularity` `minute`, `hour`
/// (default) or `day`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct UsageRange {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub granularity: Option<String>,
}

fn default_token_max_ttl() -> i64 {
    900
}

fn standard_secret_bytes() -> u8 {
    22
}
