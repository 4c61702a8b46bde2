//! Leaked keys: reporting keys found exposed (`POST /v1/leaks/report`, acted on by their
//! keyspace's leak policy), and a key revoking itself (`POST /v1/keys/self-revoke`).
//! Field names and required fields as in `docs/openapi.json` (a test compares).

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize, Serializer};

/// Keys found exposed, to report. `Debug` shows the keys as `[REDACTED]`.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct ReportLeaks {
    /// The exposed keys as found (1 to 10,000); tokens that are not working keys of the
    /// deployment are answered `false_positive` and change nothing.
    #[serde(serialize_with = "exposed")]
    pub keys: Vec<SecretString>,
    /// Who found them (1-64 characters of `[a-z0-9._-]`; default `report`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Where they were found (up to 2,000 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

impl ReportLeaks {
    pub fn new<I, S>(keys: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            keys: keys
                .into_iter()
                .map(|k| SecretString::from(k.into()))
                .collect(),
            ..Self::default()
        }
    }
}

/// The keys as the request carries them (and only there).
fn exposed<S: Serializer>(keys: &[SecretString], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_seq(keys.iter().map(ExposeSecret::expose_secret))
}

/// One result per reported key, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeakResults {
    pub results: Vec<LeakResult>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeakResult {
    pub label: LeakLabel,
    /// The key, for a true positive.
    #[serde(default)]
    pub key_id: Option<String>,
    /// What this report did: `revoked`, `disabled`, `notified`, `unchanged` (it had
    /// already stopped working), `already_reported`, or `None` for a false positive.
    #[serde(default)]
    pub action: Option<String>,
}

/// A reported token as judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum LeakLabel {
    /// A working key of this deployment.
    TruePositive,
    FalsePositive,
    /// A label this client does not know (a newer server).
    #[serde(other)]
    Unknown,
}

/// Why a key revokes itself (for the audit log and the key's record).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SelfRevoke {
    /// Up to 500 characters without control characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SelfRevokedView {
    pub key_id: String,
    pub revoked_at: String,
    /// It was revoked before this request.
    pub already_revoked: bool,
}
