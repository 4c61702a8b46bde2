//! Rate limits and quotas as operations take and show them (shared by keyspaces, owners
//! and keys), with their validation.

use keyhaven_core::quota::{QuotaState, Refill};
use keyhaven_store::{Quota, RateLimitDef, Timestamp, interval_from, interval_name};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;

use crate::error::ServiceError;
use crate::validate::rfc3339;

/// Most named limits on one keyspace, owner or key.
pub const MAX_LIMITS: usize = 16;
/// Longest limit period: 30 days.
pub const MAX_DURATION_MS: u64 = 30 * 24 * 3600 * 1000;
/// Largest limit or burst.
pub const MAX_LIMIT: u64 = 1_000_000_000;
/// Largest quota.
pub const MAX_QUOTA: u64 = 1 << 50;

/// A named rate limit: `limit` calls per `duration_ms`, at most `burst` at once.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimitBody {
    /// 1-64 characters of `[A-Za-z0-9_.-]`, unique within the list.
    #[schema(min_length = 1, max_length = 64, pattern = "^[A-Za-z0-9_.-]+$")]
    pub name: String,
    /// Calls per period, 1 to 10^9.
    #[schema(minimum = 1, maximum = 1000000000)]
    pub limit: u64,
    /// The period in milliseconds, 1 ms to 30 days.
    #[schema(minimum = 1, maximum = 2592000000_u64)]
    pub duration_ms: u64,
    /// Calls admitted at once from a full limit, 1 to 10^9 (default: `limit`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 1000000000)]
    pub burst: Option<u64>,
}

pub fn rate_limits(input: Vec<RateLimitBody>) -> Result<Vec<RateLimitDef>, ServiceError> {
    if input.len() > MAX_LIMITS {
        return Err(ServiceError::invalid(format!(
            "at most {MAX_LIMITS} rate limits"
        )));
    }
    let mut out: Vec<RateLimitDef> = Vec::with_capacity(input.len());
    for r in input {
        let name_ok = (1..=64).contains(&r.name.len())
            && r.name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
        if !name_ok {
            return Err(ServiceError::invalid(
                "rate limit names are 1-64 characters of [A-Za-z0-9_.-]",
            ));
        }
        if out.iter().any(|d| d.name == r.name) {
            return Err(ServiceError::invalid(format!(
                "rate limit `{}` is named twice",
                r.name
            )));
        }
        if !(1..=MAX_LIMIT).contains(&r.limit)
            || r.burst.is_some_and(|b| !(1..=MAX_LIMIT).contains(&b))
        {
            return Err(ServiceError::invalid(format!(
                "rate limit `{}`: limit and burst must be between 1 and {MAX_LIMIT}",
                r.name
            )));
        }
        if !(1..=MAX_DURATION_MS).contains(&r.duration_ms) {
            return Err(ServiceError::invalid(format!(
                "rate limit `{}`: duration_ms must be between 1 and {MAX_DURATION_MS}",
                r.name
            )));
        }
        let def = RateLimitDef {
            name: r.name,
            limit: r.limit,
            duration_ms: r.duration_ms,
            burst: r.burst,
        };
        // Keep every state within 2^50 µs of now (exact in Redis's Lua numbers).
        if def.gcra().capacity() > 1 << 50 {
            return Err(ServiceError::invalid(format!(
                "rate limit `{}`: burst × duration_ms / limit must stay under 35 years",
                def.name
            )));
        }
        out.push(def);
    }
    Ok(out)
}

pub fn rate_limit_views(defs: &[RateLimitDef]) -> Vec<RateLimitBody> {
    defs.iter()
        .map(|d| RateLimitBody {
            name: d.name.clone(),
            limit: d.limit,
            duration_ms: d.duration_ms,
            burst: d.burst,
        })
        .collect()
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefillBody {
    /// `daily` (00:00 UTC) or `monthly` (on `day` at 00:00 UTC).
    pub interval: String,
    /// Remaining uses after each refill, at most 2^50.
    #[schema(maximum = 1125899906842624_u64)]
    pub amount: u64,
    /// For `monthly`: 1-31 (the last day in shorter months). Default 1.
    #[schema(minimum = 1, maximum = 31)]
    pub day: Option<u8>,
}

/// A quota: uses left, with an optional refill. Setting it (create or PATCH) sets the
/// counter to `remaining`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QuotaBody {
    /// Uses left, at most 2^50.
    #[schema(maximum = 1125899906842624_u64)]
    pub remaining: u64,
    pub refill: Option<RefillBody>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct QuotaView {
    /// Uses left (as this server counts them).
    pub remaining: u64,
    pub refill: Option<RefillBody>,
    pub refilled_at: String,
    /// The next refill, if the quota refills.
    pub next_refill_at: Option<String>,
}

/// A quota as it was set (a plan's template): its `remaining` and refill rule.
pub fn quota_body(q: &Quota) -> QuotaBody {
    QuotaBody {
        remaining: q.remaining,
        refill: q.refill.map(|r| {
            let (interval, day) = interval_name(r.interval);
            RefillBody {
                interval: interval.to_owned(),
                amount: r.amount,
                day,
            }
        }),
    }
}

pub fn quota(input: QuotaBody, now: Timestamp) -> Result<Quota, ServiceError> {
    if input.remaining > MAX_QUOTA {
        return Err(ServiceError::invalid(format!(
            "quota.remaining must be at most {MAX_QUOTA}"
        )));
    }
    let refill = match input.refill {
        None => None,
        Some(r) => {
            if r.amount > MAX_QUOTA {
                return Err(ServiceError::invalid(format!(
                    "quota.refill.amount must be at most {MAX_QUOTA}"
                )));
            }
            let day = match (r.interval.as_str(), r.day) {
                ("monthly", None) => Some(1),
                ("daily", Some(_)) => {
                    return Err(ServiceError::invalid(
                        "quota.refill.day applies only to monthly refills",
                    ));
                }
                (_, day) => day,
            };
            let interval = interval_from(&r.interval, day).ok_or_else(|| {
                ServiceError::invalid(
                    "quota.refill.interval must be `daily` or `monthly` (with day 1-31)",
                )
            })?;
            Some(Refill {
                interval,
                amount: r.amount,
            })
        }
    };
    Ok(Quota {
        remaining: input.remaining,
        refill,
        refilled_at: now,
        from_plan: false,
    })
}

/// Applies a PATCH's `ratelimits` (replace) and `quota` (set, or `null` to remove) to
/// `limits`; says whether the quota is to be written.
pub fn patch_limits(
    limits: &mut keyhaven_store::Limits,
    ratelimits: Option<Vec<RateLimitBody>>,
    new_quota: Option<Option<QuotaBody>>,
    now: Timestamp,
) -> Result<keyhaven_store::QuotaWrite, ServiceError> {
    if let Some(r) = ratelimits {
        limits.ratelimits = rate_limits(r)?;
    }
    let Some(q) = new_quota else {
        return Ok(keyhaven_store::QuotaWrite::Keep);
    };
    limits.quota = q
        .map(|q| quota(q, set_at(limits.quota.as_ref(), now)))
        .transpose()?;
    Ok(keyhaven_store::QuotaWrite::Set)
}

pub use keyhaven_store::quota_set_at as set_at;

/// The quota as shown, as of `now` (a refill that is due counts): this node's live
/// counter when it has one, else the stored one.
pub fn quota_view(q: &Quota, live: Option<QuotaState>, now: Timestamp) -> QuotaView {
    let counter = live
        .filter(|l| l.refilled_at >= q.refilled_at.unix_timestamp())
        .unwrap_or(q.state());
    let state = keyhaven_core::quota::current(counter, q.refill, now.unix_timestamp());
    QuotaView {
        remaining: state.remaining,
        refill: q.refill.map(|r| {
            let (interval, day) = interval_name(r.interval);
            RefillBody {
                interval: interval.to_owned(),
                amount: r.amount,
                day,
            }
        }),
        refilled_at: rfc3339(keyhaven_store::from_unix(state.refilled_at)),
        next_refill_at: q.refill.map(|r| {
            rfc3339(keyhaven_store::from_unix(
                r.interval.next_boundary(now.unix_timestamp()),
            ))
        }),
    }
}

/// How a quota appears in an audit event's changes.
pub fn quota_audit(q: Option<&Quota>) -> Value {
    match q {
        None => Value::Null,
        Some(q) => json!({
            "remaining": q.remaining,
            "refill": q.refill.map(|r| {
                let (interval, day) = interval_name(r.interval);
                json!({"interval": interval, "amount": r.amount, "day": day})
            }),
        }),
    }
}

/// What a view needs to show quotas as they stand: this node's live counters and now.
#[derive(Debug, Clone, Copy)]
pub struct QuotaCtx<'a> {
    pub quotas: &'a crate::limits::quotas::Quotas,
    pub now: Timestamp,
}

impl<'a> QuotaCtx<'a> {
    pub fn of(state: &'a crate::service::Service) -> Self {
        Self {
            quotas: &state.limits.quotas,
            now: state.clock.now(),
        }
    }

    pub fn view(
        &self,
        target: keyhaven_store::QuotaTarget,
        q: Option<&Quota>,
    ) -> Option<QuotaView> {
        q.map(|q| quota_view(q, self.quotas.current(&target), self.now))
    }
}
