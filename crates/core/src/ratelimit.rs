//! Rate limits by GCRA (the generic cell rate algorithm): exact at window boundaries,
//! one timestamp of state per limit, and the same arithmetic whether the state lives in
//! this process or in Redis (whose script repeats [`Gcra::admit`]'s two lines).
//!
//! A limit `limit per period` with burst `burst` admits `burst` units at once and then
//! one unit every `period / limit` (the *emission interval*). The state is the
//! *theoretical arrival time* (TAT): when the bucket would be empty again if nothing
//! more arrived. A request of cost `c` is admitted when
//! `max(tat, now) + c·interval − now ≤ burst·interval`; admitting it moves the TAT there.
//! A denied request changes nothing.
//!
//! Times are Unix microseconds: fine enough for a 1 ms period, and small enough to stay
//! exact in the 53-bit integers of Redis's Lua.
//!
//! We do not use `governor`: one verification has to decide several named limits (the
//! key's and its owner's) all-or-nothing, with limits that differ per key and change at
//! runtime, and report `remaining` and `reset` for each. That is this page of arithmetic.

/// Microseconds per millisecond.
pub const MICROS_PER_MS: i64 = 1_000;

/// A limit's shape: `limit` units per `period_ms`, at most `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Gcra {
    /// Units per period (≥ 1).
    pub limit: u64,
    /// The period in milliseconds (≥ 1).
    pub period_ms: u64,
    /// Units admitted at once from a full bucket (≥ 1); usually `limit`.
    pub burst: u64,
}

/// The answer for one limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    pub admitted: bool,
    /// The state after the decision (unchanged when denied).
    pub tat: i64,
    /// Units that could still be admitted now.
    pub remaining: u64,
    /// When the bucket is full again (Unix µs).
    pub reset_at: i64,
    /// For a denied request: how long until the same cost would be admitted (µs);
    /// `None` when it never can (cost above the burst). Zero when admitted.
    pub retry_after: Option<i64>,
}

impl Gcra {
    /// Emission interval in µs, rounded up: rounding never admits more than the limit.
    pub fn interval(&self) -> i64 {
        let period = i128::from(self.period_ms) * i128::from(MICROS_PER_MS);
        let limit = i128::from(self.limit.max(1));
        i64::try_from((period + limit - 1) / limit).unwrap_or(i64::MAX)
    }

    /// How far ahead of `now` the TAT may be after an admission: `burst · interval`.
    pub fn capacity(&self) -> i64 {
        i64::try_from(i128::from(self.burst.max(1)) * i128::from(self.interval()))
            .unwrap_or(i64::MAX)
    }

    /// Decides a request of `cost` units at `now` against state `tat` (`None`: never
    /// used, a full bucket). Cost 0 asks without consuming.
    pub fn admit(&self, tat: Option<i64>, now: i64, cost: u64) -> Outcome {
        let interval = self.interval();
        let capacity = self.capacity();
        let base = tat.unwrap_or(now).max(now);
        let needed = i64::try_from(i128::from(cost) * i128::from(interval)).unwrap_or(i64::MAX);
        let candidate = base.saturating_add(needed);
        let admitted = candidate - now <= capacity;
        let tat = if admitted { candidate } else { base };
        let retry_after = if admitted {
            Some(0)
        } else if needed > capacity {
            None
        } else {
            Some(candidate - capacity - now)
        };
        Outcome {
            admitted,
            tat,
            remaining: self.remaining(tat, now),
            reset_at: tat,
            retry_after,
        }
    }

    /// Units admissible at `now` given state `tat`.
    pub fn remaining(&self, tat: i64, now: i64) -> u64 {
        let interval = self.interval().max(1);
        let free = self.capacity() - (tat.max(now) - now);
        u64::try_from(free / interval).unwrap_or(0)
    }

    /// This limit divided among `nodes` (each node's share when they cannot share state):
    /// a share is never zero, so a node never goes unlimited, and the shares never add
    /// up to more than the whole (except where the whole is smaller than `nodes`).
    pub fn share(&self, nodes: u64) -> Self {
        let nodes = nodes.max(1);
        Self {
            limit: (self.limit / nodes).max(1),
            period_ms: self.period_ms,
            burst: (self.burst / nodes).max(1),
        }
    }
}

/// How many units a GCRA limit admits to demand that never lets up, from a full bucket,
/// over `elapsed` µs: the burst, then one unit per whole interval (the number every
/// correct implementation must reproduce; tests compare against it).
pub fn saturated_admissions(limit: &Gcra, elapsed: i64) -> u64 {
    let intervals = u64::try_from(elapsed.max(0) / limit.interval().max(1)).unwrap_or(0);
    limit.burst.saturating_add(intervals)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const MS: i64 = MICROS_PER_MS;

    fn per_minute(limit: u64, burst: u64) -> Gcra {
        Gcra {
            limit,
            period_ms: 60_000,
            burst,
        }
    }

    /// Saturating demand: at every `step` µs up to `duration`, unit-cost requests until
    /// one is denied. Returns the admissions and the last instant sampled.
    fn drive(limit: &Gcra, step: i64, duration: i64) -> (u64, i64) {
        let mut tat = None;
        let mut admitted = 0;
        let mut now = 0;
        let mut last = 0;
        while now <= duration {
            loop {
                let o = limit.admit(tat, now, 1);
                if !o.admitted {
                    break;
                }
                admitted += 1;
                tat = Some(o.tat);
            }
            last = now;
            now += step;
        }
        (admitted, last)
    }

    #[test]
    fn a_full_bucket_admits_the_burst_then_one_per_interval() {
        let l = per_minute(100, 100);
        assert_eq!(l.interval(), 600 * MS);
        let mut tat = None;
        for i in 0..100 {
            let o = l.admit(tat, 0, 1);
            assert!(o.admitted, "request {i}");
            assert_eq!(o.remaining, 99 - i);
            tat = Some(o.tat);
        }
        let denied = l.admit(tat, 0, 1);
        assert!(!denied.admitted);
        assert_eq!(denied.tat, tat.unwrap(), "a denial consumes nothing");
        assert_eq!(denied.retry_after, Some(600 * MS));
        assert!(!l.admit(tat, 600 * MS - 1, 1).admitted);
        assert!(l.admit(tat, 600 * MS, 1).admitted);
        assert_eq!(denied.reset_at, 60_000 * MS);
    }

    #[test]
    fn cost_counts_as_that_many_units_and_zero_cost_only_asks() {
        let l = per_minute(10, 10);
        let o = l.admit(None, 0, 4);
        assert!(o.admitted);
        assert_eq!(o.remaining, 6);
        let ask = l.admit(Some(o.tat), 0, 0);
        assert!(ask.admitted);
        assert_eq!(ask.tat, o.tat);
        assert_eq!(ask.remaining, 6);
        assert!(!l.admit(Some(o.tat), 0, 7).admitted);
        assert!(l.admit(Some(o.tat), 0, 6).admitted);
        assert_eq!(
            l.admit(None, 0, 11).retry_after,
            None,
            "above the burst: never"
        );
    }

    #[test]
    fn uneven_intervals_round_towards_admitting_less() {
        let l = Gcra {
            limit: 3,
            period_ms: 1_000,
            burst: 2,
        };
        assert_eq!(l.interval(), 333_334);
        assert_eq!(drive(&l, MS, 10_000 * MS), (2 + 29, 10_000 * MS));
    }

    #[test]
    fn shares_are_never_zero() {
        let l = per_minute(100, 10);
        assert_eq!(l.share(2), per_minute(50, 5));
        assert_eq!(l.share(0), l);
        assert_eq!(per_minute(1, 1).share(8), per_minute(1, 1));
    }

    proptest! {
        /// Against saturating demand, admissions equal the closed formula at every
        /// instant, whatever the limit, burst and period.
        #[test]
        fn saturating_demand_matches_the_formula(
            limit in 1u64..500, burst in 1u64..200, period_s in 1u64..120,
            step_ms in 1i64..5_000, duration_s in 0i64..300,
        ) {
            let l = Gcra { limit, period_ms: period_s * 1000, burst };
            // Demand must arrive before the bucket could fill up again: with gaps longer
            // than the burst's slack, GCRA rightly forgets the idle time.
            prop_assume!(step_ms * MS <= i64::try_from(burst - 1).unwrap() * l.interval());
            let (got, last) = drive(&l, step_ms * MS, duration_s * 1_000_000);
            prop_assert_eq!(got, saturated_admissions(&l, last));
        }

        /// No window of one period ever admits more than burst + limit units.
        #[test]
        fn no_period_admits_more_than_burst_plus_limit(
            limit in 1u64..50, burst in 1u64..50, gaps in proptest::collection::vec(0i64..200_000, 1..400),
        ) {
            let l = Gcra { limit, period_ms: 1_000, burst };
            let mut tat = None;
            let mut now = 0;
            let mut times = Vec::new();
            for gap in gaps {
                now += gap;
                let o = l.admit(tat, now, 1);
                if o.admitted {
                    tat = Some(o.tat);
                    times.push(now);
                }
            }
            for (i, t) in times.iter().enumerate() {
                let in_window = times[i..].iter().take_while(|u| **u < t + 1_000_000).count();
                prop_assert!(in_window as u64 <= burst + limit);
            }
        }
    }
}
