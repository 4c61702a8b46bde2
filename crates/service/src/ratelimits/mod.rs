//! Standalone rate limits (`POST /v1/ratelimits/limit`): the keys' limiter for things
//! that are not keys, such as sign-in attempts by email or one-time codes by phone
//! number. Each namespace and identifier has its own bucket, decided exactly as a key's
//! limits are (GCRA; shared through Redis when configured, with the same fallback).
//!
//! The identifier never reaches memory, Redis or a log as given: buckets are named by
//! its SHA-256, since identifiers are often personal data.
//!
//! [`overrides`] give identifiers (or patterns of them) a limit of their own.

pub mod cache;
pub mod overrides;

use serde::Deserialize;
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use crate::actor::{Actor, Scope};
use crate::error::{Result, ServiceError};
use crate::limits::spec::{self, RateLimitBody};
use crate::service::Service;
use crate::validate::MAX_COST;

/// Most characters of an identifier.
pub const MAX_IDENTIFIER_CHARS: usize = 256;

/// One call against a standalone limit.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitRequest {
    /// What is limited (`login`, `otp.sms`): 1-64 characters of `[A-Za-z0-9_.-]`. A
    /// namespace's calls share nothing with another's.
    #[schema(min_length = 1, max_length = 64, pattern = "^[A-Za-z0-9_.-]+$")]
    pub namespace: String,
    /// Who or what within it (an email, a phone number, an address): 1-256 characters
    /// without control characters. Stored only as its SHA-256.
    #[schema(min_length = 1, max_length = 256)]
    pub identifier: String,
    /// Calls per period, 1 to 10^9.
    #[schema(minimum = 1, maximum = 1000000000)]
    pub limit: u64,
    /// The period in milliseconds, 1 ms to 30 days.
    #[schema(minimum = 1, maximum = 2592000000_u64)]
    pub duration_ms: u64,
    /// Calls admitted at once from a full limit, 1 to 10^9 (default: `limit`).
    #[schema(minimum = 1, maximum = 1000000000)]
    pub burst: Option<u64>,
    /// Units this call takes (default 1; 0 checks without consuming; at most 1,000).
    #[schema(maximum = 1000)]
    pub cost: Option<u64>,
}

/// What the limit said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitOutcome {
    /// Whether the call may proceed (it was counted); `false` took nothing.
    pub success: bool,
    pub limit: u64,
    /// Units that could still be taken now.
    pub remaining: u64,
    /// When the limit is whole again (Unix µs).
    pub reset_at: i64,
    /// For a refused call: how long until the same call would pass (µs), if ever.
    pub retry_after: Option<i64>,
}

/// Takes `cost` from `namespace`/`identifier`'s bucket under the limit the request
/// describes. Needs `ratelimits:limit` and a root key not limited to keyspaces
/// (namespaces belong to the whole deployment).
pub async fn limit(
    service: &Service,
    actor: &Actor,
    request: LimitRequest,
) -> Result<LimitOutcome> {
    actor.require(Scope::RatelimitsLimit)?;
    actor.require_unrestricted("standalone rate limits")?;
    let LimitRequest {
        namespace,
        identifier,
        limit,
        duration_ms,
        burst,
        cost,
    } = request;
    let identifier_ok = !identifier.is_empty()
        && identifier.chars().count() <= MAX_IDENTIFIER_CHARS
        && !identifier.chars().any(char::is_control);
    if !identifier_ok {
        return Err(ServiceError::invalid(format!(
            "identifier: 1-{MAX_IDENTIFIER_CHARS} characters without control characters"
        )));
    }
    let cost = cost.unwrap_or(1);
    if cost > MAX_COST {
        return Err(ServiceError::invalid(format!(
            "cost must be at most {MAX_COST}"
        )));
    }
    // The namespace is the limit's name: the same rules, the same messages.
    let asked = spec::rate_limits(vec![RateLimitBody {
        name: namespace,
        limit,
        duration_ms,
        burst,
    }])?
    .pop()
    .ok_or_else(|| ServiceError::invalid("no limit"))?;
    let def = overrides::find(service, &asked.name, &identifier)
        .await?
        .unwrap_or(asked);
    // `s:<namespace>:<hex SHA-256 of the identifier>`: apart from keys' `k:` and
    // owners' `o:` buckets, and no identifier kept as given.
    let digest = Sha256::digest(identifier.as_bytes());
    let bucket = format!("s:{}:{}", def.name, hex::encode(digest));
    let now_us = service.clock.now_micros();
    let decision = service
        .limits
        .admit_standalone(bucket, &def, cost, now_us)
        .await;
    let applied = decision
        .ratelimits
        .first()
        .ok_or_else(|| ServiceError::Unexpected(anyhow::anyhow!("the limiter decided nothing")))?;
    Ok(LimitOutcome {
        success: decision.denied.is_none(),
        limit: applied.limit,
        remaining: applied.remaining,
        reset_at: applied.reset_at,
        retry_after: applied.retry_after,
    })
}
