//! Overrides of standalone rate limits (`POST /v1/ratelimits/limit`).

use super::{RateLimitDef, Timestamp};

/// Within `namespace`, calls for an identifier that `identifier` matches (exactly, or as
/// a pattern where `*` is any run of characters) are limited by `limit` instead of the
/// limit the call names. The most specific matching override applies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RatelimitOverride {
    pub namespace: String,
    pub identifier: String,
    /// The limit (its `name` is the namespace).
    pub limit: RateLimitDef,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}
