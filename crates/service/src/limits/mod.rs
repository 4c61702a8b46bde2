//! Rate limits, quotas and the failed-verification limiter: what a verification whose
//! key matched and passed policy must still get past.
//!
//! - Which limits apply ([`effective_limits`]): the keyspace's defaults, overridden by
//!   name by the owner's (shared by all the owner's keys), overridden by the key's own.
//!   A limit counts in the bucket of whoever defined it: the key's, or the owner's.
//! - Where they are decided: in this process ([`local`]), or with `redis_url` in Redis
//!   ([`redis`]) so every node enforces one limit. When Redis fails, the
//!   `ratelimit_fallback` policy applies: `local_share` (default) has each node enforce
//!   its share (`limit / nodes`, never less than 1) locally; `deny` refuses. Either way
//!   `keyhaven_ratelimit_fallback_total` counts it and the log says so.
//! - Quotas ([`quotas`]) are this node's counters, written to the store in batches.
//! - All or nothing: a call denied by any limit or quota consumes none of them.

pub mod failures;
pub mod local;
pub mod quotas;
pub mod redis;
pub mod spec;

use std::sync::atomic::{AtomicBool, Ordering};

use keyhaven_core::VerifyCode;
use keyhaven_core::ratelimit::Outcome;
use keyhaven_store::{QuotaTarget, RateLimitDef};

use crate::cache::VerifyRecord;
use serde::{Deserialize, Serialize};

use self::failures::FailureLimits;
use self::local::{BucketRequest, LocalBuckets};
use self::quotas::{QuotaRequest, Quotas};
use self::redis::RedisLimits;
use crate::config::{Config, RatelimitFallback};

/// Who a limit's bucket belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum LimitScope {
    Key,
    Owner,
    /// The failed-verification limiter's per-address budget.
    Client,
}

/// A limit a verification asks for by name, with its own cost.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NamedCost {
    pub name: String,
    /// At most 1,000. Default: the request's `cost`.
    #[schema(maximum = 1000)]
    pub cost: Option<u64>,
}

/// One limit as applied to a verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied<'a> {
    pub name: &'a str,
    pub scope: LimitScope,
    pub limit: u64,
    pub duration_ms: u64,
    pub remaining: u64,
    /// When the limit is whole again (Unix µs).
    pub reset_at: i64,
    /// For an exceeded limit: how long until the same call would pass (µs), if ever.
    pub retry_after: Option<i64>,
    pub exceeded: bool,
}

/// What the limits said about one verification.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decision<'a> {
    /// `RATE_LIMITED` or `USAGE_EXCEEDED`; `None` when the call may proceed.
    pub denied: Option<VerifyCode>,
    pub ratelimits: Vec<Applied<'a>>,
    /// Remaining uses of the tightest quota, after this call.
    pub remaining: Option<u64>,
    /// The quota use's sequence number (for waiting until it is durable).
    pub quota_use: Option<u64>,
}

/// The limits that apply to `record`: the keyspace's defaults, each replaced by a
/// limit of the same name that the key (or its plan) or its owner defines, in the key's
/// own bucket;
/// then every owner limit, in the owner's shared bucket. An owner's limits always apply:
/// a key's own limit of the same name adds to them and never lifts them (so a root key
/// that may not touch owners cannot free a key from its owner's cap).
pub fn effective_limits(record: &VerifyRecord) -> Vec<(LimitScope, &RateLimitDef)> {
    let owner_defs = record.owner_ratelimits();
    let own = &record.own_limits().ratelimits;
    let plan = record.plan_ratelimits();
    let mut out: Vec<(LimitScope, &RateLimitDef)> = record
        .keyspace_ratelimits()
        .iter()
        .filter(|d| {
            !own.iter()
                .chain(plan)
                .chain(owner_defs)
                .any(|o| o.name == d.name)
        })
        .map(|d| (LimitScope::Key, d))
        .collect();
    out.extend(own.iter().chain(plan).map(|d| (LimitScope::Key, d)));
    out.extend(owner_defs.iter().map(|d| (LimitScope::Owner, d)));
    out
}

#[derive(Debug)]
pub struct Limiter {
    local: LocalBuckets,
    pub quotas: Quotas,
    redis: Option<RedisLimits>,
    fallback: RatelimitFallback,
    nodes_override: Option<u64>,
    pub failures: FailureLimits,
    /// Whether this node is deciding without Redis right now (for the log, once per
    /// change).
    in_fallback: AtomicBool,
}

/// Quota uses taken before an await: given back when dropped unless taken out.
struct Refund<'q, 'r> {
    quotas: &'q Quotas,
    requests: &'r [QuotaRequest<'r>],
    decision: Option<quotas::QuotaDecision>,
}

impl Refund<'_, '_> {
    /// Gives the uses back now; returns the decision as it stands after the refund.
    fn refund(&mut self) -> Option<quotas::QuotaDecision> {
        let mut q = self.decision.take()?;
        self.quotas.refund(self.requests, &q);
        q.seq = None;
        q.remaining = q
            .remaining
            .iter()
            .zip(self.requests)
            .map(|(left, r)| left.saturating_add(r.cost))
            .collect();
        Some(q)
    }
}

impl Drop for Refund<'_, '_> {
    fn drop(&mut self) {
        self.refund();
    }
}

/// A named limit resolved for one call.
struct Planned<'a> {
    scope: LimitScope,
    def: &'a RateLimitDef,
    id: String,
    cost: u64,
}

impl Limiter {
    pub fn new(config: &Config, node_id: String) -> anyhow::Result<Self> {
        let redis = match &config.redis_url {
            Some(url) => Some(RedisLimits::new(url, config.redis_timeout(), node_id)?),
            None => None,
        };
        Ok(Self {
            local: LocalBuckets::default(),
            quotas: Quotas::default(),
            redis,
            fallback: config.ratelimit_fallback,
            nodes_override: config.cluster_nodes.map(u64::from),
            failures: FailureLimits::new(config),
            in_fallback: AtomicBool::new(false),
        })
    }

    pub fn shared(&self) -> Option<&RedisLimits> {
        self.redis.as_ref()
    }

    /// Decides the key's limits and quotas for a call of `cost` (or, with `only`, just
    /// the named limits at their own costs) at `now_us`.
    pub async fn admit<'a>(
        &self,
        record: &'a VerifyRecord,
        cost: u64,
        only: Option<&[NamedCost]>,
        now_us: i64,
    ) -> Decision<'a> {
        let key_id = record.key_id();
        let planned: Vec<Planned<'_>> = effective_limits(record)
            .into_iter()
            .filter_map(|(scope, def)| {
                let cost = match only {
                    None => cost,
                    Some(names) => names
                        .iter()
                        .find(|n| n.name == def.name)
                        .map(|n| n.cost.unwrap_or(cost))?,
                };
                let owner = record.owner_id().unwrap_or_default();
                // The bucket: `k:<key id>:<name>` or `o:<owner id>:<name>`.
                let (tag, holder) = match scope {
                    LimitScope::Owner => ("o:", owner),
                    LimitScope::Key | LimitScope::Client => ("k:", key_id),
                };
                let mut id = String::with_capacity(tag.len() + holder.len() + 1 + def.name.len());
                id.push_str(tag);
                id.push_str(holder);
                id.push(':');
                id.push_str(&def.name);
                Some(Planned {
                    scope,
                    def,
                    id,
                    cost,
                })
            })
            .collect();
        let key_target =
            (record.own_limits().quota.as_ref()).map(|q| (QuotaTarget::Key(key_id.to_owned()), q));
        let owner_target = match (record.owner_id(), record.owner_quota()) {
            (Some(owner), Some(q)) => Some((QuotaTarget::Owner(owner.to_owned()), q)),
            _ => None,
        };
        let quota_requests: Vec<QuotaRequest<'_>> = key_target
            .iter()
            .chain(owner_target.iter())
            .map(|(target, stored)| QuotaRequest {
                target,
                stored,
                cost,
            })
            .collect();
        let now_s = now_us.div_euclid(1_000_000);

        match &self.redis {
            Some(redis) if !planned.is_empty() => {
                // Boxed: the Redis call's future is large, and every verification's
                // future would otherwise carry (and move) its size.
                Box::pin(self.decide_shared(redis, &planned, &quota_requests, now_us, now_s)).await
            }
            _ => self.decide_local(&planned, &quota_requests, now_us, now_s, 1),
        }
    }

    /// Decides one standalone limit (`POST /v1/ratelimits/limit`) for a call of `cost`
    /// at `now_us`, in the bucket `bucket`: in this process or through Redis, with the
    /// same fallback, exactly as a key's limits are decided.
    pub async fn admit_standalone<'a>(
        &self,
        bucket: String,
        def: &'a RateLimitDef,
        cost: u64,
        now_us: i64,
    ) -> Decision<'a> {
        // The scope is not shown for a standalone limit: the identifier's own bucket.
        let planned = [Planned {
            scope: LimitScope::Key,
            def,
            id: bucket,
            cost,
        }];
        let now_s = now_us.div_euclid(1_000_000);
        match &self.redis {
            Some(redis) => Box::pin(self.decide_shared(redis, &planned, &[], now_us, now_s)).await,
            None => self.decide_local(&planned, &[], now_us, now_s, 1),
        }
    }

    /// Everything in this process, under the buckets' and quotas' locks at once.
    /// `share` divides every limit (1 = the whole limit).
    fn decide_local<'a>(
        &self,
        planned: &[Planned<'a>],
        quota_requests: &[QuotaRequest<'_>],
        now_us: i64,
        now_s: i64,
        share: u64,
    ) -> Decision<'a> {
        // Fallback shares count in buckets of their own, apart from the shared ones.
        let ids: Vec<String> = if share > 1 {
            planned.iter().map(|p| format!("fb:{}", p.id)).collect()
        } else {
            Vec::new()
        };
        let requests: Vec<BucketRequest<'_>> = planned
            .iter()
            .enumerate()
            .map(|(i, p)| BucketRequest {
                id: ids.get(i).map_or(p.id.as_str(), String::as_str),
                limit: p.def.gcra().share(share),
                cost: p.cost,
            })
            .collect();
        let mut buckets = self.local.lock(requests.iter().map(|r| r.id));
        let outcomes = buckets.decide(&requests, now_us, false);
        let rate_ok = outcomes.iter().all(|o| o.admitted);
        let quota = if quota_requests.is_empty() {
            None
        } else {
            Some(self.quotas.lock().decide(quota_requests, now_s, rate_ok))
        };
        let quota_ok = quota.as_ref().is_none_or(|q| q.admitted);
        if rate_ok && quota_ok {
            buckets.commit(&requests, &outcomes);
        }
        let outcomes = if rate_ok && quota_ok {
            outcomes
        } else {
            // Nothing was taken: report the admitting buckets as they stand.
            let asked: Vec<BucketRequest<'_>> = requests
                .iter()
                .map(|r| BucketRequest {
                    cost: 0,
                    ..r.clone()
                })
                .collect();
            let standing = buckets.decide(&asked, now_us, false);
            outcomes
                .into_iter()
                .zip(standing)
                .map(|(o, now)| if o.admitted { now } else { o })
                .collect()
        };
        drop(buckets);
        decision(planned, &outcomes, quota, rate_ok, share)
    }

    async fn decide_shared<'a>(
        &self,
        redis: &RedisLimits,
        planned: &[Planned<'a>],
        quota_requests: &[QuotaRequest<'_>],
        now_us: i64,
        now_s: i64,
    ) -> Decision<'a> {
        if redis.available() {
            // Quotas are taken first and given back if Redis refuses or fails: a call
            // the quota refuses never counts against the shared limits, and one the
            // limits refuse costs no quota. (Meanwhile a concurrent call may see the
            // taken use missing: the error is towards refusing, never admitting more.)
            let quota = (!quota_requests.is_empty())
                .then(|| self.quotas.lock().decide(quota_requests, now_s, true));
            if let Some(q) = &quota
                && !q.admitted
            {
                return decision(planned, &[], quota, true, 1);
            }
            // Gives the quota back if this call is dropped while Redis decides (client
            // gone, request timeout): a call never answered must not cost a use.
            let mut taken = Refund {
                quotas: &self.quotas,
                requests: quota_requests,
                decision: quota,
            };
            let requests: Vec<BucketRequest<'_>> = planned
                .iter()
                .map(|p| BucketRequest {
                    id: &p.id,
                    limit: p.def.gcra(),
                    cost: p.cost,
                })
                .collect();
            let shared = redis.decide(&requests, now_us).await;
            let admitted = shared
                .as_ref()
                .is_ok_and(|outcomes| outcomes.iter().all(|o| o.admitted));
            let quota = if admitted {
                taken.decision.take()
            } else {
                taken.refund()
            };
            match shared {
                Ok(outcomes) => {
                    self.note_fallback(false);
                    return decision(planned, &outcomes, quota, admitted, 1);
                }
                Err(redis::Unavailable::Connecting) => {
                    // A (re)connection is under way: this call falls back, but Redis is
                    // not known to be down.
                }
                Err(e) => {
                    tracing::debug!(error = ?e, "Redis did not decide a rate limit");
                    self.note_fallback(true);
                }
            }
        } else {
            self.note_fallback(true);
        }
        crate::metrics::ratelimit_fallback();
        // Without a node count (none configured, none counted yet) a share cannot be
        // computed: refusing is the only answer that never admits more than the limit.
        let nodes = self.nodes_override.or_else(|| redis.counted_nodes());
        match (self.fallback, nodes) {
            (RatelimitFallback::LocalShare, Some(nodes)) => {
                self.decide_local(planned, quota_requests, now_us, now_s, nodes.max(1))
            }
            _ => {
                let outcomes: Vec<Outcome> = planned
                    .iter()
                    .map(|p| {
                        let mut o = p.def.gcra().admit(None, now_us, 0);
                        o.admitted = false;
                        o.remaining = 0;
                        o.retry_after =
                            Some(i64::try_from(redis::RETRY_AFTER.as_micros()).unwrap_or(0));
                        o
                    })
                    .collect();
                decision(planned, &outcomes, None, false, 1)
            }
        }
    }

    fn note_fallback(&self, now_in_fallback: bool) {
        if self.in_fallback.swap(now_in_fallback, Ordering::Relaxed) != now_in_fallback {
            crate::metrics::ratelimit_redis_up(!now_in_fallback);
            if now_in_fallback {
                tracing::error!(
                    policy = ?self.fallback,
                    "Redis is unreachable: rate limits fall back to this node's share"
                );
            } else {
                // Fallback buckets are kept (they empty by themselves): a Redis that
                // comes and goes must not hand out a fresh burst share each time.
                tracing::warn!("Redis is reachable again: rate limits are shared");
            }
        }
    }

    /// Periodic upkeep: forget full buckets; count nodes through Redis.
    pub async fn tick(&self, now_us: i64) {
        self.local.sweep(now_us);
        self.failures.sweep(now_us);
        if let Some(redis) = &self.redis
            && redis.available()
        {
            match redis.heartbeat(now_us / 1000).await {
                Ok(nodes) => {
                    crate::metrics::ratelimit_nodes(nodes);
                    crate::metrics::ratelimit_redis_up(true);
                    self.note_fallback(false);
                }
                Err(e) => {
                    crate::metrics::ratelimit_redis_up(false);
                    tracing::warn!(error = ?e, "Redis heartbeat failed");
                }
            }
        }
    }
}

fn decision<'a>(
    planned: &[Planned<'a>],
    outcomes: &[Outcome],
    quota: Option<quotas::QuotaDecision>,
    rate_ok: bool,
    share: u64,
) -> Decision<'a> {
    let ratelimits = planned
        .iter()
        .zip(outcomes)
        .map(|(p, o)| {
            let limit = p.def.gcra().share(share);
            Applied {
                name: &p.def.name,
                scope: p.scope,
                limit: limit.limit,
                duration_ms: limit.period_ms,
                remaining: o.remaining,
                reset_at: o.reset_at,
                retry_after: if o.admitted { None } else { o.retry_after },
                exceeded: !o.admitted,
            }
        })
        .collect();
    let denied = if !rate_ok {
        Some(VerifyCode::RateLimited)
    } else if quota.as_ref().is_some_and(|q| !q.admitted) {
        Some(VerifyCode::UsageExceeded)
    } else {
        None
    };
    Decision {
        denied,
        ratelimits,
        remaining: quota
            .as_ref()
            .and_then(|q| q.remaining.iter().min().copied()),
        quota_use: quota.and_then(|q| q.seq),
    }
}
