//! Webhooks (`/v1/webhooks`), their deliveries, and the event log they deliver
//! (`/v1/events`), with the field names and required fields of `docs/openapi.json` (a
//! test compares).

use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::admin::Page;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookView {
    pub id: String,
    pub url: String,
    #[serde(default)]
    pub description: Option<String>,
    /// Event types delivered; `["*"]` for all.
    pub event_types: Vec<String>,
    /// Only events of this keyspace; `None` for all.
    #[serde(default)]
    pub keyspace_id: Option<String>,
    pub enabled: bool,
    pub created_at: String,
    pub updated_at: String,
}

/// A new webhook with its signing secret, shown this once. `Debug` shows the secret as
/// `[REDACTED]`.
#[derive(Debug, Deserialize)]
pub struct CreatedWebhook {
    /// `whsec_…`: the Standard Webhooks signing secret.
    pub secret: SecretString,
    #[serde(flatten)]
    pub webhook: WebhookView,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateWebhook {
    /// `http(s)://…` without credentials; a public address unless the server allows
    /// private targets.
    pub url: String,
    /// 1-16 event types (default `["*"]`, every type).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_types: Option<Vec<String>>,
    /// Deliver only this keyspace's events (required of a keyspace-restricted root key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keyspace_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Default true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
}

impl CreateWebhook {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            ..Self::default()
        }
    }
}

/// A change to a webhook: fields left `None` stay as they are; `Some(None)` clears.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateWebhook {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_types: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<Option<String>>,
    /// A disabled webhook gets no new deliveries, and those waiting are paused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
}

/// One event's delivery to one webhook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryView {
    pub id: String,
    pub webhook_id: String,
    /// The event, and the `webhook-id` header of every attempt.
    pub event_id: String,
    pub event_type: String,
    /// `pending`, `delivered` or `failed`.
    pub status: String,
    pub attempts: u32,
    /// When a pending delivery is next tried.
    #[serde(default)]
    pub next_attempt_at: Option<String>,
    #[serde(default)]
    pub last_status_code: Option<u16>,
    #[serde(default)]
    pub last_error: Option<String>,
    #[serde(default)]
    pub delivered_at: Option<String>,
    pub created_at: String,
    /// Every attempt, oldest first: only from `Webhooks::delivery`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt_log: Option<Vec<AttemptView>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptView {
    pub attempt: u32,
    pub attempted_at: String,
    /// The receiver's HTTP status, if it answered.
    #[serde(default)]
    pub status_code: Option<u16>,
    #[serde(default)]
    pub error: Option<String>,
    pub duration_ms: i64,
}

/// The filters of `GET /v1/webhooks/{id}/deliveries`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DeliveryFilter {
    /// `pending`, `delivered` or `failed`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(flatten)]
    pub page: Page,
}

/// An event of the append-only event log (`key.created`, `key.revoked`, …); webhooks
/// deliver `payload` as the message's `data`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventView {
    /// Also the `webhook-id` of its deliveries.
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub key_id: Option<String>,
    #[serde(default)]
    pub keyspace_id: Option<String>,
    pub payload: Map<String, Value>,
    pub created_at: String,
}

/// The filters of `GET /v1/events`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct EventFilter {
    /// Only events of this type, e.g. `key.revoked`.
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keyspace_id: Option<String>,
    /// RFC 3339; events at or after.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// RFC 3339; events before.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
    #[serde(flatten)]
    pub page: Page,
}
