//! The failed-verification limiter: wrong secrets for one key id, or failures from one
//! client IP (the `client_ip` a caller passes with the verification), are counted apart
//! from the key's own limits. Once either is over its budget, further *failures* answer
//! `RATE_LIMITED` instead of `NOT_FOUND`/`MALFORMED`, telling the caller to shed that
//! client, and count nothing more until the budget refills.
//!
//! It never refuses a call whose secret matched: the key's holder keeps working while
//! someone guesses at their key id, and a user behind the same address as an attacker
//! is not locked out. (Guessing a 175-bit secret is hopeless anyway; this limiter is
//! about shedding abusive clients and saying so, not about the secret's strength.)
//! The answer is the same whether or not the key id exists.
//!
//! State is per node (a node sheds its own abusers; no Redis round trip on failures).

use std::net::IpAddr;

use keyhaven_core::ratelimit::Gcra;

use super::local::{BucketRequest, LocalBuckets};
use super::{Applied, LimitScope};
use crate::config::Config;

pub const NAME: &str = "failed_verifications";

#[derive(Debug)]
pub struct FailureLimits {
    per_key: Option<Gcra>,
    per_ip: Option<Gcra>,
    buckets: LocalBuckets,
}

fn per_minute(n: u32) -> Option<Gcra> {
    (n > 0).then(|| Gcra {
        limit: u64::from(n),
        period_ms: 60_000,
        burst: u64::from(n),
    })
}

impl FailureLimits {
    pub fn new(config: &Config) -> Self {
        Self {
            per_key: per_minute(config.failed_verifications_per_key_per_minute),
            per_ip: per_minute(config.failed_verifications_per_ip_per_minute),
            buckets: LocalBuckets::default(),
        }
    }

    /// Counts one failed verification. Returns the exhausted limit when the failure
    /// is over budget (and so was not counted).
    pub fn note(
        &self,
        key_id: Option<&str>,
        ip: Option<IpAddr>,
        now_us: i64,
    ) -> Option<Applied<'static>> {
        let key_bucket = key_id.map(|id| format!("f:k:{id}"));
        let ip_bucket = ip.map(|ip| format!("f:ip:{}", client_block(ip)));
        let requests: Vec<BucketRequest<'_>> =
            [(&key_bucket, self.per_key), (&ip_bucket, self.per_ip)]
                .into_iter()
                .filter_map(|(id, limit)| {
                    Some(BucketRequest {
                        id: id.as_deref()?,
                        limit: limit?,
                        cost: 1,
                    })
                })
                .collect();
        if requests.is_empty() {
            return None;
        }
        let outcomes = self.buckets.decide(&requests, now_us);
        requests
            .iter()
            .zip(outcomes)
            .find(|(_, o)| !o.admitted)
            .map(|(r, o)| Applied {
                name: NAME,
                scope: if r.id.starts_with("f:ip:") {
                    LimitScope::Client
                } else {
                    LimitScope::Key
                },
                limit: r.limit.limit,
                duration_ms: r.limit.period_ms,
                remaining: 0,
                reset_at: o.reset_at,
                retry_after: o.retry_after,
                exceeded: true,
            })
    }

    pub fn sweep(&self, now_us: i64) {
        self.buckets.sweep(now_us);
    }
}

/// The block one client is counted by: an IPv4 address (IPv4-mapped IPv6 included), or
/// an IPv6 /64 (what one subscriber usually gets, so rotating addresses within it
/// gains nothing). Failed verifications and failed sign-ins both count by it.
pub fn client_block(ip: IpAddr) -> String {
    match ip.to_canonical() {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let [a, b, c, d, ..] = v6.segments();
            format!("{a:x}:{b:x}:{c:x}:{d:x}::/64")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_are_counted_by_ipv4_address_or_ipv6_64() {
        let block = |s: &str| client_block(s.parse().unwrap());
        assert_eq!(block("203.0.113.9"), "203.0.113.9");
        assert_eq!(block("::ffff:203.0.113.9"), "203.0.113.9");
        assert_eq!(block("2001:db8:1:2:aaaa::1"), block("2001:db8:1:2:ffff::9"));
        assert_ne!(block("2001:db8:1:2::1"), block("2001:db8:1:3::1"));
    }
}
