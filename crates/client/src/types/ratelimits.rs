//! Standalone rate limits (`/v1/ratelimits`): limits on anything (logins, SMS codes)
//! without a key, and per-identifier overrides of them. Field names and required fields
//! as in `docs/openapi.json` (a test compares).

use serde::{Deserialize, Serialize};

/// One call against a standalone limit: `limit` calls per `duration_ms` for
/// `identifier` within `namespace` (an override for the identifier takes precedence).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitRequest {
    /// 1-64 characters of `[A-Za-z0-9_.-]`.
    pub namespace: String,
    /// 1-256 characters without control characters; stored only as its SHA-256.
    pub identifier: String,
    pub limit: u64,
    pub duration_ms: u64,
    /// Calls admitted at once from a full limit (default: `limit`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u64>,
    /// Units this call takes (default 1; 0 checks without consuming; at most 1,000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<u64>,
}

impl LimitRequest {
    pub fn new(
        namespace: impl Into<String>,
        identifier: impl Into<String>,
        limit: u64,
        duration_ms: u64,
    ) -> Self {
        Self {
            namespace: namespace.into(),
            identifier: identifier.into(),
            limit,
            duration_ms,
            burst: None,
            cost: None,
        }
    }
}

/// The limit's answer: `success` says whether the call may proceed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitResponse {
    /// The call was counted and may proceed; `false` took nothing.
    pub success: bool,
    /// The limit applied (an override's, if one matched).
    pub limit: u64,
    /// Units that could still be taken now.
    pub remaining: u64,
    /// When the limit is whole again (RFC 3339, milliseconds).
    pub reset_at: String,
    /// For a refused call: milliseconds until it would pass (absent when it never can).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}

/// An override to set, replacing the one of the same namespace and identifier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetOverride {
    pub namespace: String,
    /// An identifier, or a pattern where `*` stands for any run of characters (at most
    /// 4).
    pub identifier: String,
    pub limit: u64,
    pub duration_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u64>,
}

impl SetOverride {
    pub fn new(
        namespace: impl Into<String>,
        identifier: impl Into<String>,
        limit: u64,
        duration_ms: u64,
    ) -> Self {
        Self {
            namespace: namespace.into(),
            identifier: identifier.into(),
            limit,
            duration_ms,
            burst: None,
        }
    }
}

/// An override of a namespace's limit for an identifier or a pattern of them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OverrideView {
    pub namespace: String,
    pub identifier: String,
    pub limit: u64,
    pub duration_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u64>,
    pub created_at: String,
    pub updated_at: String,
}
