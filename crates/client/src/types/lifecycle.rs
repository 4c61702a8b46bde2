//! More of a key's life than `admin` has: credits (a quota's counter changed
//! atomically), keys nearing expiry, revealing a recoverable key, and importing keys
//! from another system. Field names and required fields as in `docs/openapi.json`.

use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::admin::KeyView;

/// How [`ChangeCredits`] changes the counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CreditOp {
    /// Sets the credits to the amount.
    Set,
    Increment,
    /// Lowers the credits by the amount (refused if fewer are left).
    Decrement,
}

/// A change to the credits (quota uses left) of a key or an owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeCredits {
    pub op: CreditOp,
    /// 0 to 2^50.
    pub amount: u64,
}

impl ChangeCredits {
    pub fn set(amount: u64) -> Self {
        Self {
            op: CreditOp::Set,
            amount,
        }
    }

    pub fn increment(amount: u64) -> Self {
        Self {
            op: CreditOp::Increment,
            amount,
        }
    }

    pub fn decrement(amount: u64) -> Self {
        Self {
            op: CreditOp::Decrement,
            amount,
        }
    }
}

/// The credits after a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreditsView {
    pub remaining: u64,
}

/// A key within its keyspace's expiry warning.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExpiringKeyView {
    pub key: KeyView,
    /// When the key stops verifying: the earlier of its `expires_at` and the keyspace's
    /// maximum key age.
    pub expires: String,
}

/// The filters of `GET /v1/keys/expiring` (soonest first, one page).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ExpiringFilter {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keyspace_id: Option<String>,
    /// 1-500, default 50.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

/// The plaintext of a recoverable key. `Debug` shows the key as `[REDACTED]`.
#[derive(Debug, Deserialize)]
pub struct RevealedKey {
    pub key_id: String,
    pub key: SecretString,
}

/// `POST /v1/keys/import`: 1 to 1,000 keys whose plaintext Keyhaven never saw.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ImportRequest {
    pub keys: Vec<ImportItem>,
}

/// One key to import, by the digest its old system stored.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ImportItem {
    pub keyspace_id: String,
    /// `prefixed_sha256`, `dotted_sha512` or `sha256`.
    pub format: String,
    /// The stored digest, hex.
    pub hash: String,
    /// `prefixed_sha256` and `dotted_sha512`: the key's prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// `prefixed_sha256`: the short token (the lookup id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub short_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub meta: Map<String, Value>,
    /// RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
}

impl ImportItem {
    pub fn new(
        keyspace_id: impl Into<String>,
        format: impl Into<String>,
        hash: impl Into<String>,
    ) -> Self {
        Self {
            keyspace_id: keyspace_id.into(),
            format: format.into(),
            hash: hash.into(),
            ..Self::default()
        }
    }
}

/// What an import did, in total and per item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportResponse {
    pub imported: u64,
    pub skipped: u64,
    pub rejected: u64,
    pub results: Vec<ImportOutcome>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportOutcome {
    /// Position of the item in the request.
    pub index: u64,
    /// `imported`, `skipped` (a key with the same lookup exists) or `rejected`.
    pub status: String,
    #[serde(default)]
    pub key_id: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
}
