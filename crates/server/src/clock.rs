//! The one place that reads the wall clock. Everything that decides by time (expiry,
//! usage minutes, idempotency retention) takes `now` as a parameter and is called with
//! this; tests call those functions with times of their choosing.

use keyhaven_store::Timestamp;

/// Now, in UTC, truncated to whole seconds (the precision Keyhaven stores).
#[allow(clippy::disallowed_methods)]
pub fn now() -> Timestamp {
    let t = time::OffsetDateTime::now_utc();
    t.replace_nanosecond(0).unwrap_or(t)
}
