//! When a failed delivery is tried again: exponential backoff with jitter, within a
//! retry period.

use std::time::Duration;

/// The retry schedule of webhook deliveries (from the configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Delay after the first failed attempt; each further failure doubles it.
    pub initial: Duration,
    /// The delay never grows beyond this.
    pub max_delay: Duration,
    /// No attempt is scheduled later than this after the first one was due.
    pub period: Duration,
}

impl RetryPolicy {
    /// The delay after the `failures`-th failed attempt (1 for the first), before
    /// jitter: `initial × 2^(failures-1)`, at most `max_delay`.
    pub fn base_delay(&self, failures: u32) -> Duration {
        let factor = 1u32
            .checked_shl(failures.saturating_sub(1))
            .unwrap_or(u32::MAX);
        self.initial
            .checked_mul(factor)
            .unwrap_or(self.max_delay)
            .min(self.max_delay)
    }

    /// When the next attempt is due (Unix ms), or `None` when the retry period is over.
    /// `jitter` in `[0, 1)` spreads retries over the upper half of the delay ("equal
    /// jitter"), so endpoints that failed together do not get their retries together.
    pub fn next_attempt(
        &self,
        failures: u32,
        now_ms: i64,
        first_due_ms: i64,
        jitter: f64,
    ) -> Option<i64> {
        let delay = self.base_delay(failures).as_millis() as f64;
        let jittered = delay / 2.0 + delay / 2.0 * jitter.clamp(0.0, 1.0);
        let at = now_ms.saturating_add(jittered as i64);
        let deadline =
            first_due_ms.saturating_add(i64::try_from(self.period.as_millis()).unwrap_or(i64::MAX));
        (at <= deadline).then_some(at)
    }
}

/// A jitter value in `[0, 1)` from the OS random source (0.5 if it fails).
pub fn jitter() -> f64 {
    let mut bytes = [0u8; 8];
    match keyhaven_core::random::fill(&mut bytes) {
        Ok(()) => (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64,
        Err(_) => 0.5,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            initial: Duration::from_secs(5),
            max_delay: Duration::from_secs(3_600),
            period: Duration::from_secs(24 * 3_600),
        }
    }

    #[test]
    fn delays_double_up_to_the_cap() {
        let p = policy();
        let secs: Vec<u64> = (1..=12).map(|n| p.base_delay(n).as_secs()).collect();
        assert_eq!(
            secs,
            vec![5, 10, 20, 40, 80, 160, 320, 640, 1280, 2560, 3600, 3600]
        );
        assert_eq!(p.base_delay(200), Duration::from_secs(3_600));
    }

    #[test]
    fn jitter_stays_in_the_upper_half_and_the_period_ends_retries() {
        let p = policy();
        assert_eq!(p.next_attempt(1, 0, 0, 0.0), Some(2_500));
        assert_eq!(p.next_attempt(1, 0, 0, 0.999_999), Some(4_999));
        let day = 24 * 3_600 * 1_000;
        assert_eq!(p.next_attempt(20, day - 1_000, 0, 0.0), None);
        assert!(p.next_attempt(20, day - 1_800_001, 0, 0.0).is_some());
        for _ in 0..1000 {
            let j = jitter();
            assert!((0.0..1.0).contains(&j));
        }
    }
}
