//! The one place that reads the wall clock. Everything that decides by time (expiry,
//! grace periods, usage minutes, idempotency retention) takes `now` as a parameter; the
//! server gets it from its [`Clock`], which tests replace with a manual one and move by
//! hand.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use keyhaven_store::Timestamp;

const MICROS: i64 = 1_000_000;

/// Now, in UTC, truncated to whole seconds (the precision Keyhaven stores).
pub fn now() -> Timestamp {
    let t = time::OffsetDateTime::now_utc();
    t.replace_nanosecond(0).unwrap_or(t)
}

/// Where a server reads the time.
#[derive(Debug, Clone, Default)]
pub enum Clock {
    /// The system clock.
    #[default]
    System,
    /// A clock that only moves when told to (Unix microseconds), for tests.
    Manual(Arc<AtomicI64>),
}

impl Clock {
    pub fn manual(start: Timestamp) -> Self {
        Self::Manual(Arc::new(AtomicI64::new(start.unix_timestamp() * MICROS)))
    }

    /// Now, in whole seconds (what Keyhaven stores).
    pub fn now(&self) -> Timestamp {
        Self::seconds(self.now_micros())
    }

    /// The whole-second timestamp of `micros` (from [`Clock::now_micros`]), for callers
    /// that need both forms of one instant.
    pub fn seconds(micros: i64) -> Timestamp {
        keyhaven_store::from_unix(micros.div_euclid(MICROS))
    }

    /// Now in Unix microseconds, for rate limits (whose intervals can be milliseconds).
    pub fn now_micros(&self) -> i64 {
        match self {
            Self::System => {
                let t = time::OffsetDateTime::now_utc();
                i64::try_from(t.unix_timestamp_nanos() / 1_000).unwrap_or(i64::MAX)
            }
            Self::Manual(micros) => micros.load(Ordering::SeqCst),
        }
    }

    /// Moves a manual clock by `seconds` (no effect on the system clock).
    pub fn advance(&self, seconds: i64) {
        self.advance_micros(seconds * MICROS);
    }

    /// Moves a manual clock by `micros` (no effect on the system clock).
    pub fn advance_micros(&self, micros: i64) {
        if let Self::Manual(now) = self {
            now.fetch_add(micros, Ordering::SeqCst);
        }
    }

    /// Sets a manual clock (no effect on the system clock).
    pub fn set(&self, t: Timestamp) {
        if let Self::Manual(now) = self {
            now.store(t.unix_timestamp() * MICROS, Ordering::SeqCst);
        }
    }
}
