//! Records of what keys did: usage series and totals, the event log's filter, anomaly
//! alerts and their episodes. Storage shapes, like [`model`](crate::model).

use serde_json::{Map, Value};

use crate::model::{AuditEvent, KeyspaceScope, Timestamp};

/// The buckets usage is stored in: minutes, rolled up into hours and days as it is
/// written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Granularity {
    Minute,
    Hour,
    Day,
}

impl Granularity {
    pub const ALL: [Self; 3] = [Self::Minute, Self::Hour, Self::Day];

    pub fn seconds(self) -> i64 {
        match self {
            Self::Minute => 60,
            Self::Hour => 3_600,
            Self::Day => 86_400,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Minute => "minute",
            Self::Hour => "hour",
            Self::Day => "day",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|g| g.as_str() == s)
    }

    /// The start of the bucket holding `unix` seconds.
    pub fn floor(self, unix: i64) -> i64 {
        unix - unix.rem_euclid(self.seconds())
    }

    /// The table and its bucket column.
    pub(crate) fn table(self) -> (&'static str, &'static str) {
        match self {
            Self::Minute => ("usage_minutely", "minute"),
            Self::Hour => ("usage_hourly", "hour"),
            Self::Day => ("usage_daily", "day"),
        }
    }
}

/// Whose usage a series adds up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsageTarget<'a> {
    Key(&'a str),
    /// Every key of the owner (keys deleted since are no longer counted).
    Owner(&'a str),
    /// Every key of the keyspace.
    Keyspace(&'a str),
}

/// One bucket's count of one outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageRow {
    /// Unix seconds of the bucket's start.
    pub bucket: i64,
    pub outcome: String,
    pub count: u64,
}

/// One key's count of one outcome over a range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyUsageTotal {
    pub key_id: String,
    pub outcome: String,
    pub count: u64,
}

/// Filters of the event log; every one optional.
#[derive(Debug, Clone, Default)]
pub struct EventFilter<'a> {
    pub visible: KeyspaceScope<'a>,
    pub kind: Option<&'a str>,
    pub key_id: Option<&'a str>,
    pub keyspace_id: Option<&'a str>,
    pub since: Option<Timestamp>,
    pub until: Option<Timestamp>,
}

/// Every event type Keyhaven stores.
pub const EVENT_TYPES: &[&str] = &[
    "key.created",
    "key.rotated",
    "key.revoked",
    "key.expiring",
    "key.leaked",
    "usage.anomaly",
    "ratelimit.exceeded",
    "verify.revoked_key_used",
];

/// The event a successful admin mutation causes, stored in the mutation's own
/// transaction: its type and data. Derived from the audit event, so no mutation can
/// forget its event, and the data holds nothing the audit log would not (no secret).
pub fn lifecycle_event(audit: &AuditEvent) -> Option<(&'static str, Map<String, Value>)> {
    let kind = match audit.action.as_str() {
        "key.create" => "key.created",
        "key.rotate" => "key.rotated",
        "key.revoke" => "key.revoked",
        "key.leak" => "key.leaked",
        _ => return None,
    };
    let mut data = Map::new();
    data.insert("key_id".into(), Value::String(audit.target_id.clone()));
    data.insert(
        "keyspace_id".into(),
        audit.keyspace_id.clone().map_or(Value::Null, Value::String),
    );
    data.insert("actor".into(), Value::String(audit.actor.clone()));
    for (field, value) in &audit.changes {
        data.entry(field.clone()).or_insert_with(|| value.clone());
    }
    Some((kind, data))
}

/// Anomaly thresholds of a keyspace; `None` takes the server's default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AlertThresholds {
    /// A minute with more than this many times the key's baseline rate is a spike.
    pub spike_factor: Option<u32>,
    /// Fewer verifications in a minute are never a spike.
    pub spike_min_per_minute: Option<u64>,
    /// This many failed verifications (wrong secret) of one key id in a minute is a burst.
    pub failed_per_minute: Option<u64>,
}

/// The deployment's default thresholds: a key's minute below both (under its keyspace's
/// own thresholds where set), with no dead-key use and nothing limited, cannot alert, so
/// [`crate::Store::minute_activity`] leaves it out (a busy deployment has a row for
/// every key used in the minute).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AlertFloor {
    pub spike_min_per_minute: u64,
    pub failed_per_minute: u64,
}

/// One key's verifications in one closed minute, as the anomaly judge reads them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MinuteActivity {
    pub key_id: String,
    pub keyspace_id: String,
    pub key_created_at: Timestamp,
    pub thresholds: AlertThresholds,
    /// Unix seconds of the minute's start.
    pub minute: i64,
    pub total: u64,
    /// The key id presented with a wrong secret (usage outcome `WRONG_SECRET`).
    pub failed: u64,
    /// REVOKED or EXPIRED answers: the secret matched a key that no longer works.
    pub dead_key_uses: u64,
    /// RATE_LIMITED or USAGE_EXCEEDED answers.
    pub limited: u64,
}

/// An alert about one key, stored as an event only when it starts an episode.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    pub key_id: String,
    pub keyspace_id: String,
    /// Episodes are kept per key and kind (`rate_spike`, `failed_verifications`, …).
    pub kind: &'static str,
    /// The event type stored for a new episode.
    pub event_type: &'static str,
    /// Unix seconds of the minute that showed it.
    pub minute: i64,
    pub data: Map<String, Value>,
}
