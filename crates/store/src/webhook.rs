//! Webhook endpoints, their outbox of deliveries and the log of attempts.

use std::fmt;

use crate::model::{Event, Timestamp};

/// An endpoint events are delivered to.
#[derive(Clone, PartialEq, Eq)]
pub struct Webhook {
    pub id: String,
    pub url: String,
    pub description: Option<String>,
    /// Event types delivered; `*` for all.
    pub event_types: Vec<String>,
    /// Only events of this keyspace; `None` for all.
    pub keyspace_id: Option<String>,
    pub enabled: bool,
    /// The signing secret, sealed by the server (the store cannot read it).
    pub sealed_secret: Vec<u8>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl fmt::Debug for Webhook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Webhook")
            .field("id", &self.id)
            .field("url", &self.url)
            .field("event_types", &self.event_types)
            .field("keyspace_id", &self.keyspace_id)
            .field("enabled", &self.enabled)
            .field("sealed_secret", &"[sealed]")
            .finish_non_exhaustive()
    }
}

impl Webhook {
    /// Whether an event of `kind` in `keyspace_id` goes to this endpoint.
    pub fn wants(&self, kind: &str, keyspace_id: Option<&str>) -> bool {
        self.enabled
            && self.event_types.iter().any(|t| t == "*" || t == kind)
            && self
                .keyspace_id
                .as_deref()
                .is_none_or(|ks| keyspace_id == Some(ks))
    }
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryStatus {
    Pending,
    Delivered,
    /// Retries exhausted; a manual re-send puts it back to pending.
    Failed,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Pending, Self::Delivered, Self::Failed]
            .into_iter()
            .find(|x| x.as_str() == s)
    }
}

/// One event bound for one endpoint. Times in Unix milliseconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub id: String,
    pub webhook_id: String,
    pub event_id: String,
    pub event_type: String,
    pub status: DeliveryStatus,
    pub attempts: u32,
    pub next_attempt_ms: i64,
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
    pub delivered_at_ms: Option<i64>,
    pub created_at: Timestamp,
}

/// A delivery a worker has claimed, with what it needs to send it.
#[derive(Clone)]
pub struct DueDelivery {
    pub id: String,
    pub webhook_id: String,
    pub url: String,
    pub sealed_secret: Vec<u8>,
    pub event: Event,
    /// Attempts made before this one.
    pub attempts: u32,
    /// When the first attempt was due (retries stop a period after it).
    pub first_due_ms: i64,
}

impl fmt::Debug for DueDelivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DueDelivery")
            .field("id", &self.id)
            .field("webhook_id", &self.webhook_id)
            .field("url", &self.url)
            .field("sealed_secret", &"[sealed]")
            .field("event", &self.event.id)
            .field("attempts", &self.attempts)
            .finish_non_exhaustive()
    }
}

/// One attempt, as logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub delivery_id: String,
    /// 1 for the first attempt.
    pub attempt: u32,
    pub attempted_ms: i64,
    /// The receiver's HTTP status, if it answered.
    pub status_code: Option<u16>,
    /// Why the attempt failed (timeout, connection refused, non-2xx), if it did.
    pub error: Option<String>,
    pub duration_ms: i64,
}

/// What follows an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterAttempt {
    Delivered,
    RetryAt(i64),
    GiveUp,
}
