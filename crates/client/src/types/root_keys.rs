//! Root keys (`/v1/root-keys`): the credentials of the admin API itself, with the
//! field names and required fields of `docs/openapi.json` (a test compares).

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

/// A root key as the API shows it: never its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootKeyView {
    pub key_id: String,
    /// `kh_root_<key id>_…<last 4>`.
    pub start: String,
    #[serde(default)]
    pub name: Option<String>,
    pub scopes: Vec<String>,
    /// The keyspaces it is limited to; `None` for all.
    #[serde(default)]
    pub keyspace_ids: Option<Vec<String>>,
    #[serde(default)]
    pub expires_at: Option<String>,
    #[serde(default)]
    pub revoked_at: Option<String>,
    #[serde(default)]
    pub revoked_reason: Option<String>,
    /// Set once rotated: the successor's key id.
    #[serde(default)]
    pub rotated_to: Option<String>,
    /// When a rotated key stops working.
    #[serde(default)]
    pub grace_until: Option<String>,
    #[serde(default)]
    pub rotated_from: Option<String>,
    #[serde(default)]
    pub last_used_at: Option<String>,
    pub created_at: String,
}

/// A root key just made (by create or rotate): its plaintext, shown this once, and its
/// record. `Debug` shows the key as `[REDACTED]`.
#[derive(Debug, Deserialize)]
pub struct CreatedRootKey {
    /// The plaintext root key: Keyhaven keeps only a peppered HMAC of it.
    pub key: SecretString,
    #[serde(flatten)]
    pub view: RootKeyView,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateRootKey {
    /// 1-32 scopes, each one the calling root key holds itself (`*` only from a `*` key).
    pub scopes: Vec<String>,
    /// Limits the key to these keyspaces (1-100 ids).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keyspace_ids: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// RFC 3339, in the future.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
}

impl CreateRootKey {
    pub fn new<I, S>(scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            scopes: scopes.into_iter().map(Into::into).collect(),
            ..Self::default()
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevokeRootKey {
    /// Why (kept in the audit log), 1-200 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RotateRootKey {
    /// How long the old key keeps working (default 0: it stops at once), at most a year.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grace_period_seconds: Option<u64>,
}
