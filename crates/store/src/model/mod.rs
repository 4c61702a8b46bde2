//! The records a [`Store`](crate::Store) keeps. These are storage shapes, not wire
//! shapes: the server maps them to its JSON types, so a column can change without the API
//! changing and the other way round.

use std::fmt;

use keyhaven_core::quota::{Interval, QuotaState, Refill};
use keyhaven_core::ratelimit::Gcra;
use keyhaven_core::{IpAllowlist, Verifier};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use time::OffsetDateTime;

mod grants;
mod overrides;

pub use grants::{Grants, Plan, Role};
pub use overrides::RatelimitOverride;

/// Every timestamp Keyhaven keeps is UTC with whole-second precision.
pub type Timestamp = OffsetDateTime;

/// Unix seconds of `t`, the form timestamps take in the database.
pub fn to_unix(t: Timestamp) -> i64 {
    t.unix_timestamp()
}

/// The timestamp for `secs` Unix seconds; out-of-range values clamp to the epoch (the
/// database only ever holds values we wrote from valid timestamps).
pub fn from_unix(secs: i64) -> Timestamp {
    OffsetDateTime::from_unix_timestamp(secs).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// Id of the reserved keyspace that holds root keys.
pub const ROOT_KEYSPACE_ID: &str = "ks_root";
/// Prefix of root keys: `kh_root_<key id>_<secret><checksum>`.
pub const ROOT_PREFIX: &str = "kh_root";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keyspace {
    pub id: String,
    pub name: String,
    pub prefix: String,
    pub policy: KeyspacePolicy,
    /// Default named rate limits of every key in the keyspace (a key's own limit of the
    /// same name, or its owner's, takes precedence).
    pub ratelimits: Vec<RateLimitDef>,
    pub alerts: crate::AlertThresholds,
    /// How the customer portal looks to this keyspace's customers.
    pub branding: Branding,
    /// What happens to a key of this keyspace reported as leaked.
    pub leak_policy: LeakPolicy,
    /// Addresses every key of the keyspace may be used from (`None`: any).
    pub ip_allowlist: Option<IpAllowlist>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// What a keyspace does with a key that a secret scanner (or anyone holding it) reports
/// as leaked. Every policy records a `key.leaked` event.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum LeakPolicy {
    /// The key stops working at once (REVOKED).
    #[default]
    Revoke,
    /// The key is disabled (DISABLED) and can be enabled again.
    Disable,
    /// Nothing changes but the event: the owner decides.
    Notify,
}

impl LeakPolicy {
    pub const ALL: [Self; 3] = [Self::Revoke, Self::Disable, Self::Notify];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Revoke => "revoke",
            Self::Disable => "disable",
            Self::Notify => "notify",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == s)
    }
}

/// A keyspace's look in the customer portal; every field optional (defaults apply).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Branding {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logo_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accent_color: Option<String>,
}

impl Branding {
    pub fn is_empty(&self) -> bool {
        self == &Self::default()
    }
}

/// Lifecycle defaults of a keyspace (seconds). All optional.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KeyspacePolicy {
    /// Keys stop verifying (EXPIRED) this long after creation, whatever their expiry.
    pub max_key_age: Option<i64>,
    /// Grace period of a rotation that does not name one.
    pub default_grace: Option<i64>,
    /// Keys whose effective expiry is this close are "expiring" (listed, and a
    /// `key.expiring` event is stored for each).
    pub expiry_warning: Option<i64>,
    /// How long the secrets of new keys (and rotations' successors) are.
    pub secret_length: keyhaven_core::SecretLength,
    /// Longest lifetime of a signed token minted from a key of the keyspace (`None`:
    /// [`DEFAULT_TOKEN_MAX_TTL`]).
    pub token_max_ttl: Option<i64>,
}

/// Longest token lifetime when a keyspace sets none: 15 minutes.
pub const DEFAULT_TOKEN_MAX_TTL: i64 = 15 * 60;
/// Longest token lifetime any keyspace may set: a day. A signing key that stopped
/// signing verifies no token this long after.
pub const TOKEN_MAX_TTL_CEILING: i64 = 24 * 3600;

/// How far ahead expiring keys are reported when a keyspace sets no warning threshold.
pub const DEFAULT_EXPIRY_WARNING: i64 = 7 * 24 * 3600;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub id: String,
    pub external_id: String,
    pub name: Option<String>,
    pub meta: Map<String, Value>,
    /// Rate limits and quota shared by all the owner's keys.
    pub limits: Limits,
    /// Addresses every key of the owner may be used from (`None`: any).
    pub ip_allowlist: Option<IpAllowlist>,
    /// Roles (by name, resolved in each key's keyspace) and permissions every key of
    /// the owner holds.
    pub grants: Grants,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// A named rate limit as configured: `limit` per `duration_ms`, `burst` at once
/// (default: `limit`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitDef {
    pub name: String,
    pub limit: u64,
    pub duration_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u64>,
}

impl RateLimitDef {
    pub fn gcra(&self) -> Gcra {
        Gcra {
            limit: self.limit,
            period_ms: self.duration_ms,
            burst: self.burst.unwrap_or(self.limit),
        }
    }
}

/// Remaining uses, with an optional calendar refill.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    pub remaining: u64,
    pub refill: Option<Refill>,
    /// When the quota was last set or refilled.
    pub refilled_at: Timestamp,
    /// A counter that came from the key's (or owner's) plan: it refills by the plan's
    /// rule (`refill` is filled in from the plan when the key is read for verification)
    /// and ends when the plan has no quota any more.
    pub from_plan: bool,
}

impl Quota {
    pub fn state(&self) -> QuotaState {
        QuotaState {
            remaining: self.remaining,
            refilled_at: self.refilled_at.unix_timestamp(),
        }
    }
}

/// When a quota set at `now` counts as set: strictly after the quota it replaces, so
/// every node, comparing the two, follows the new one (keeping its own uses not yet
/// written) even when both were set in the same second.
pub fn quota_set_at(previous: Option<&Quota>, now: Timestamp) -> Timestamp {
    match previous {
        Some(p) if p.refilled_at >= now => p.refilled_at + time::Duration::seconds(1),
        _ => now,
    }
}

/// The limits a key or an owner carries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Limits {
    pub ratelimits: Vec<RateLimitDef>,
    pub quota: Option<Quota>,
}

/// Whether an update writes the quota (its counter and refill) or leaves the stored one
/// alone. Counters move on every verification, so an update that does not mean to set
/// them must not write back a value it read earlier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaWrite {
    Keep,
    Set,
}

/// Whose quota a use is counted against.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum QuotaTarget {
    Key(String),
    Owner(String),
}

/// A change to a quota's counter through the credits API: set it, or add or take
/// `amount`. Applied in one transaction holding the row, so concurrent changes through
/// any node all count and a decrement never takes the counter below zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreditOp {
    Set(u64),
    Increment(u64),
    Decrement(u64),
}

/// A credits change as stored: the counter before it, and the quota after it (set at
/// a `refilled_at` strictly after the one it replaces, so every node follows it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CreditsChange {
    pub before: u64,
    pub quota: Quota,
}

/// Uses of one quota since the last write: `used` to subtract, after setting the counter
/// to the refill amount as of `refilled` when a refill happened in between.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaUse {
    pub target: QuotaTarget,
    /// Negative: uses given back (a refund of uses already written).
    pub used: i64,
    /// (refill time, amount) when the counter was refilled since the last write.
    pub refilled: Option<(Timestamp, u64)>,
}

/// The stored refill interval: `daily`, or `monthly` with its day.
pub fn interval_name(interval: Interval) -> (&'static str, Option<u8>) {
    match interval {
        Interval::Daily => ("daily", None),
        Interval::Monthly { day } => ("monthly", Some(day)),
    }
}

pub fn interval_from(name: &str, day: Option<u8>) -> Option<Interval> {
    match (name, day) {
        ("daily", _) => Some(Interval::Daily),
        ("monthly", Some(day)) if (1..=31).contains(&day) => Some(Interval::Monthly { day }),
        _ => None,
    }
}

/// A stored key: everything but the secret, which is never stored. `verifier` is the
/// peppered HMAC of the secret; its `Debug` output is redacted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRecord {
    pub key_id: String,
    pub keyspace_id: String,
    pub owner_id: Option<String>,
    pub name: Option<String>,
    /// The key's last four characters (from the checksum), for display.
    pub last4: String,
    pub verifier: Verifier,
    pub scopes: Vec<String>,
    pub meta: Map<String, Value>,
    /// Root keys only: the keyspaces this root key may act on; `None` means all.
    pub allowed_keyspaces: Option<Vec<String>>,
    pub enabled: bool,
    pub expires_at: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
    pub revoked_reason: Option<String>,
    /// Set when the key was rotated: its successor's key id and the end of the grace
    /// period during which this key still verifies.
    pub rotation: Option<Rotation>,
    /// The key this one replaced, when it was created by a rotation.
    pub rotated_from: Option<String>,
    /// For a recoverable key: the plaintext sealed by the server (envelope encryption
    /// under a master key kept outside the database). Unreadable without that key.
    pub sealed_key: Option<Vec<u8>>,
    /// For an imported key: how it is found and, until its first successful verify, the
    /// digest its old system stored.
    pub import: Option<Import>,
    /// The key's own rate limits (overriding its keyspace's by name) and quota.
    pub limits: Limits,
    /// Addresses the key may be used from (`None`: any); its owner's and keyspace's
    /// allowlists apply as well.
    pub ip_allowlist: Option<IpAllowlist>,
    /// The key's own roles (in its keyspace) and permissions; its owner's add to them.
    pub grants: Grants,
    pub last_used_at: Option<Timestamp>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

#[derive(Clone, PartialEq, Eq)]
pub struct Import {
    /// `prefixed_sha256`, `dotted_sha512` or `sha256`.
    pub format: String,
    /// A peppered tag of the key's public id or digest (`keyhaven_core::compat`).
    pub lookup: String,
    /// `HMAC(pepper, old digest)`; `None` once the key was verified and moved to the
    /// native verifier.
    pub digest: Option<Vec<u8>>,
    /// The key's public part, for display only (`prefix_shortToken`, or the prefix of a
    /// dotted key); never used to find or check a key.
    pub public: Option<String>,
}

/// The old digest is an unpeppered verifier: `Debug` never prints it.
impl fmt::Debug for Import {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Import")
            .field("format", &self.format)
            .field("lookup", &self.lookup)
            .field("digest", &self.digest.as_ref().map(|_| "<redacted>"))
            .field("public", &self.public)
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotation {
    pub successor: String,
    pub grace_until: Timestamp,
}

/// What verification needs about a key, in one read: the key, its keyspace's prefix and
/// name, and its owner's external id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyForVerify {
    pub key: KeyRecord,
    pub keyspace_prefix: String,
    pub keyspace_name: String,
    /// The keyspace's maximum key age, which caps the key's expiry.
    pub max_key_age: Option<i64>,
    pub owner_external_id: Option<String>,
    /// The keyspace's default rate limits.
    pub keyspace_ratelimits: Vec<RateLimitDef>,
    /// The owner's shared limits (empty without an owner).
    pub owner_limits: Limits,
    /// The owner's and the keyspace's IP allowlists.
    pub owner_ip_allowlist: Option<IpAllowlist>,
    pub keyspace_ip_allowlist: Option<IpAllowlist>,
    /// Every permission the key holds, sorted: its own, its owner's, its plans', and
    /// those of the roles any of them names in the key's keyspace (resolved when the
    /// record is read).
    pub permissions: Vec<String>,
    /// Every scope the key holds: its own (`key.scopes`, what is written back), then
    /// those its plan and its owner's plan add.
    pub scopes: Vec<String>,
    /// The rate limits of the key's plan that the key does not set itself (by name),
    /// counted in the key's own buckets. (An owner's plan's are in `owner_limits`.)
    pub plan_ratelimits: Vec<RateLimitDef>,
}

impl KeyForVerify {
    /// The earlier of the key's own expiry and the keyspace's maximum age.
    pub fn effective_expiry(&self) -> Option<Timestamp> {
        effective_expiry(&self.key, self.max_key_age)
    }
}

/// The earlier of `key.expires_at` and `created_at + max_key_age`.
pub fn effective_expiry(key: &KeyRecord, max_key_age: Option<i64>) -> Option<Timestamp> {
    let by_age = max_key_age.map(|age| key.created_at + time::Duration::seconds(age));
    match (key.expires_at, by_age) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// A stored lifecycle event (`key.expiring`, …), for webhook delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub id: String,
    pub kind: String,
    pub key_id: Option<String>,
    pub keyspace_id: Option<String>,
    pub payload: Map<String, Value>,
    pub created_at: Timestamp,
}

/// A key whose effective expiry falls within its keyspace's warning window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpiringKey {
    pub key: KeyRecord,
    pub expires: Timestamp,
}

/// An audit event as written: who changed what, when, from where, and which fields.
/// `changes` never holds a secret or verifier: the store writes what the caller built,
/// and callers build it from [`KeyRecord`] fields that are safe to show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    pub id: String,
    pub occurred_at: Timestamp,
    pub actor: String,
    pub action: String,
    pub target_type: String,
    pub target_id: String,
    pub keyspace_id: Option<String>,
    pub changes: Map<String, Value>,
    pub client_ip: Option<String>,
}

/// A response to replay for a repeated `Idempotency-Key`. The response is sealed by the
/// server before it reaches the store; the store keeps bytes it cannot read.
#[derive(Clone, PartialEq, Eq)]
pub struct IdempotentResponse {
    pub actor: String,
    pub idempotency_key: String,
    pub request_hash: [u8; 32],
    pub status: u16,
    pub sealed_response: Vec<u8>,
    pub created_at: Timestamp,
}

impl fmt::Debug for IdempotentResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdempotentResponse")
            .field("actor", &self.actor)
            .field("idempotency_key", &self.idempotency_key)
            .field("status", &self.status)
            .field(
                "sealed_response",
                &format_args!("<{} bytes>", self.sealed_response.len()),
            )
            .finish_non_exhaustive()
    }
}

/// What every mutation writes besides the change itself, in the same transaction: the
/// audit event (always) and the idempotent response (when the request carried a key).
#[derive(Debug, Clone, Copy)]
pub struct Change<'a> {
    pub audit: &'a AuditEvent,
    pub idempotency: Option<&'a IdempotentResponse>,
}

impl<'a> Change<'a> {
    pub fn audited(audit: &'a AuditEvent) -> Self {
        Self {
            audit,
            idempotency: None,
        }
    }
}

/// A page of results, newest first, with the cursor for the next (older) page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Pass back as [`PageRequest::after`] to continue; `None` on the last page.
    pub next: Option<i64>,
}

/// Newest-first pagination by the row's insertion sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    pub limit: u32,
    /// Only rows older than this sequence number (from [`Page::next`]).
    pub after: Option<i64>,
}

/// Restricts results to some keyspaces; `None` means all (non-reserved) keyspaces.
pub type KeyspaceScope<'a> = Option<&'a [String]>;

#[derive(Debug, Clone, Default)]
pub struct KeyFilter<'a> {
    pub visible: KeyspaceScope<'a>,
    pub keyspace_id: Option<&'a str>,
    pub owner_id: Option<&'a str>,
    /// Most recently used first (never used last), instead of newest first. The page
    /// cursor is then the last key's `last_used_at` (0 for never) here and its sequence
    /// number in [`PageRequest::after`].
    pub by_last_used: bool,
    pub last_used_before: Option<i64>,
    /// Keys whose id starts with, or whose name contains, this text (case-insensitive),
    /// or whose owner's external id is exactly it.
    pub search: Option<&'a str>,
    /// Only keys in this state at the given Unix second.
    pub state: Option<(KeyStateFilter, i64)>,
    /// Root keys (in the reserved keyspace) instead of other keys; `visible` and
    /// `keyspace_id` then do not apply.
    pub root_keys: bool,
}

/// The states a key list can be narrowed to (evaluated at a given Unix second).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyStateFilter {
    /// Enabled, not revoked, not expired (rotating keys in their grace period included).
    Active,
    /// Revoked, or rotated with the grace period over.
    Revoked,
    Expired,
    Disabled,
}

#[derive(Debug, Clone, Default)]
pub struct AuditFilter<'a> {
    pub visible: KeyspaceScope<'a>,
    pub keyspace_id: Option<&'a str>,
    pub target_id: Option<&'a str>,
    pub action: Option<&'a str>,
    pub actor: Option<&'a str>,
    pub since: Option<Timestamp>,
    pub until: Option<Timestamp>,
}

/// Verifications of one key in one minute with one outcome, to add to the stored count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageCount {
    pub key_id: String,
    /// Unix seconds of the minute's start.
    pub minute: i64,
    pub outcome: String,
    pub count: u64,
}

/// A flush of in-memory usage: counts to add and the newest use of each key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UsageBatch {
    pub counts: Vec<UsageCount>,
    pub last_used: Vec<(String, Timestamp)>,
}

impl UsageBatch {
    pub fn is_empty(&self) -> bool {
        self.counts.is_empty() && self.last_used.is_empty()
    }
}

/// What a committed mutation changed, as far as other nodes' verify caches care. The
/// PostgreSQL engine sends it with `NOTIFY` in the mutation's own transaction, so it is
/// delivered if and only if the change committed (see [`Store::listen`](crate::Store)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invalidation {
    /// One key's record, or the "no such key" answer cached for its id.
    Key(String),
    /// Every key of this owner.
    Owner(String),
    /// Every key of this keyspace.
    Keyspace(String),
    /// Import lookups: keys were imported or deleted.
    Imports,
    /// A node's heartbeat through the channel. When a node receives its own, everything
    /// committed before that heartbeat was sent has reached it.
    Ping(String),
}

impl Invalidation {
    /// The `NOTIFY` payload: a one-letter tag, `:`, and the id.
    pub fn encode(&self) -> String {
        match self {
            Self::Key(id) => format!("k:{id}"),
            Self::Owner(id) => format!("o:{id}"),
            Self::Keyspace(id) => format!("s:{id}"),
            Self::Imports => "i:".to_owned(),
            Self::Ping(node) => format!("p:{node}"),
        }
    }

    pub fn decode(payload: &str) -> Option<Self> {
        let (tag, id) = payload.split_once(':')?;
        let id = id.to_owned();
        Some(match tag {
            "k" => Self::Key(id),
            "o" => Self::Owner(id),
            "s" => Self::Keyspace(id),
            "i" => Self::Imports,
            "p" => Self::Ping(id),
            _ => return None,
        })
    }
}
