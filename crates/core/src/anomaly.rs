//! The anomaly rule for a key's traffic: a minute is a spike when it carries more than
//! `factor` times the key's own baseline (its mean per-minute count over a window before
//! that minute) and at least a minimum volume. Pure arithmetic; the server feeds it the
//! flushed per-minute counters, never the request path.

/// Thresholds of the spike rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpikeRule {
    /// How many times the baseline a minute must exceed.
    pub factor: u32,
    /// Minutes with fewer verifications are never spikes.
    pub min_per_minute: u64,
    /// Minutes in the baseline window.
    pub window_minutes: u64,
}

impl SpikeRule {
    /// The baseline: mean verifications per minute over the window. Idle minutes count
    /// as zero; a key quiet all window has a baseline of one per minute, so reaching
    /// `min_per_minute` (and `factor` per minute) after an idle hour is a spike.
    pub fn baseline(&self, window_total: u64) -> f64 {
        (window_total as f64 / self.window_minutes.max(1) as f64).max(1.0)
    }

    /// Whether `count` in one minute is a spike over `window_total` in the window.
    pub fn is_spike(&self, count: u64, window_total: u64) -> bool {
        count >= self.min_per_minute
            && count as f64 > f64::from(self.factor) * self.baseline(window_total)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const RULE: SpikeRule = SpikeRule {
        factor: 10,
        min_per_minute: 100,
        window_minutes: 60,
    };

    #[test]
    fn fifty_times_steady_traffic_is_a_spike_and_steady_traffic_is_not() {
        // 20 a minute for an hour.
        assert!(!RULE.is_spike(20, 20 * 60));
        assert!(!RULE.is_spike(150, 20 * 60), "7.5x is within the factor");
        assert!(RULE.is_spike(20 * 50, 20 * 60));
        // Below the minimum volume nothing is a spike, however quiet the key was.
        assert!(!RULE.is_spike(99, 0));
        assert!(RULE.is_spike(100, 0));
    }

    proptest! {
        #[test]
        fn more_traffic_never_undoes_a_spike(count in 0u64..1_000_000, extra in 0u64..1_000_000, window in 0u64..10_000_000) {
            if RULE.is_spike(count, window) {
                prop_assert!(RULE.is_spike(count + extra, window));
            }
        }

        #[test]
        fn a_higher_baseline_never_makes_a_spike(count in 0u64..1_000_000, window in 0u64..10_000_000, extra in 0u64..10_000_000) {
            if !RULE.is_spike(count, window) {
                prop_assert!(!RULE.is_spike(count, window + extra));
            }
        }
    }
}
