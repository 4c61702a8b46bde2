//! The one place that reads the wall clock. Everything that decides by time (expiry,
//! grace periods, usage minutes, idempotency retention) takes `now` as a parameter; the
//! server gets it from its [`Clock`], which tests replace with a manual one and move by
//! hand.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use keyhaven_store::Timestamp;

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
    /// A clock that only moves when told to (Unix seconds), for tests.
    Manual(Arc<AtomicI64>),
}

impl Clock {
    pub fn manual(start: Timestamp) -> Self {
        Self::Manual(Arc::new(AtomicI64::new(start.unix_timestamp())))
    }

    pub fn now(&self) -> Timestamp {
        match self {
            Self::System => now(),
            Self::Manual(secs) => keyhaven_store::from_unix(secs.load(Ordering::SeqCst)),
        }
    }

    /// Moves a manual clock by `seconds` (no effect on the system clock).
    pub fn advance(&self, seconds: i64) {
        if let Self::Manual(secs) = self {
            secs.fetch_add(seconds, Ordering::SeqCst);
        }
    }

    /// Sets a manual clock (no effect on the system clock).
    pub fn set(&self, t: Timestamp) {
        if let Self::Manual(secs) = self {
            secs.store(t.unix_timestamp(), Ordering::SeqCst);
        }
    }
}
