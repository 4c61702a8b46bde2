//! The application's metric names and recorders (the `metrics` facade: whoever installs
//! a recorder, the HTTP server's Prometheus exporter today, gets them). Labels come from
//! closed sets, never from input, so no key or id can appear in a metric.

pub const VERIFICATIONS: &str = "keyhaven_verifications_total";
pub const VERIFY_DURATION: &str = "keyhaven_verify_duration_seconds";
pub const RATELIMIT_FALLBACK: &str = "keyhaven_ratelimit_fallback_total";
pub const RATELIMIT_REDIS_UP: &str = "keyhaven_ratelimit_redis_up";
pub const QUOTA_FLUSH_FAILURES: &str = "keyhaven_quota_flush_failures_total";
pub const USAGE_FLUSH_DURATION: &str = "keyhaven_usage_flush_duration_seconds";

/// How long one usage flush took to write what had accumulated.
pub fn usage_flush(took: std::time::Duration) {
    metrics::histogram!(USAGE_FLUSH_DURATION).record(took.as_secs_f64());
}

/// A rate-limit decision made without Redis although Redis is configured.
pub fn ratelimit_fallback() {
    metrics::counter!(RATELIMIT_FALLBACK).increment(1);
}

/// Whether the last Redis rate-limit call succeeded (1) or not (0).
pub fn ratelimit_redis_up(up: bool) {
    metrics::gauge!(RATELIMIT_REDIS_UP).set(if up { 1.0 } else { 0.0 });
}

pub const RATELIMIT_NODES: &str = "keyhaven_ratelimit_nodes";

/// Live nodes sharing rate limits, as last counted in Redis.
pub fn ratelimit_nodes(nodes: u64) {
    metrics::gauge!(RATELIMIT_NODES).set(nodes as f64);
}

pub const TOKENS_MINTED: &str = "keyhaven_tokens_minted_total";

/// A signed token was minted, in `format` (`jws` or `biscuit`).
pub fn token_minted(format: keyhaven_core::token::TokenFormat) {
    metrics::counter!(TOKENS_MINTED, "format" => format.as_str()).increment(1);
}
