//! Quotas: a number of remaining uses, optionally refilled on a calendar (every day at
//! 00:00 UTC, or every month on a given day at 00:00 UTC). Pure: the caller passes `now`.
//!
//! A refill *sets* the remaining uses to the refill amount (unused uses do not carry
//! over), once per boundary, however long the key sat idle.

use time::{Date, Month, OffsetDateTime, Time};

/// When a quota refills.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interval {
    /// Every day at 00:00 UTC.
    Daily,
    /// Every month on `day` (1–31) at 00:00 UTC; in shorter months, on the last day.
    Monthly { day: u8 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refill {
    pub interval: Interval,
    /// The remaining uses after a refill.
    pub amount: u64,
}

/// A quota's counter: uses left, and when it was last refilled (Unix seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaState {
    pub remaining: u64,
    pub refilled_at: i64,
}

impl Interval {
    /// The latest refill boundary at or before `t` (Unix seconds).
    pub fn last_boundary(self, t: i64) -> i64 {
        let Ok(at) = OffsetDateTime::from_unix_timestamp(t) else {
            return t;
        };
        let date = match self {
            Self::Daily => at.date(),
            Self::Monthly { day } => {
                let this_month = month_day(at.year(), at.month(), day);
                match this_month {
                    Some(d) if d <= at.date() => d,
                    _ => {
                        let (y, m) = previous_month(at.year(), at.month());
                        month_day(y, m, day).unwrap_or(at.date())
                    }
                }
            }
        };
        date.with_time(Time::MIDNIGHT).assume_utc().unix_timestamp()
    }

    /// The first refill boundary after `t` (Unix seconds), for telling callers when.
    pub fn next_boundary(self, t: i64) -> i64 {
        let Ok(at) = OffsetDateTime::from_unix_timestamp(t) else {
            return t;
        };
        let date = match self {
            Self::Daily => at.date().next_day().unwrap_or(at.date()),
            Self::Monthly { day } => match month_day(at.year(), at.month(), day) {
                Some(d) if d > at.date() => d,
                _ => {
                    let (y, m) = if at.month() == Month::December {
                        (at.year() + 1, Month::January)
                    } else {
                        (at.year(), at.month().next())
                    };
                    month_day(y, m, day).unwrap_or(at.date())
                }
            },
        };
        date.with_time(Time::MIDNIGHT).assume_utc().unix_timestamp()
    }
}

/// `day` of the month, or the month's last day when the month is shorter.
fn month_day(year: i32, month: Month, day: u8) -> Option<Date> {
    let day = day.clamp(1, time::util::days_in_month(month, year));
    Date::from_calendar_date(year, month, day).ok()
}

fn previous_month(year: i32, month: Month) -> (i32, Month) {
    if month == Month::January {
        (year - 1, Month::December)
    } else {
        (year, month.previous())
    }
}

/// The state as of `now`: refilled if a boundary passed since the last refill.
pub fn current(state: QuotaState, refill: Option<Refill>, now: i64) -> QuotaState {
    match refill {
        Some(r) => {
            let boundary = r.interval.last_boundary(now);
            if boundary > state.refilled_at {
                QuotaState {
                    remaining: r.amount,
                    refilled_at: boundary,
                }
            } else {
                state
            }
        }
        None => state,
    }
}

/// Takes `cost` uses from a current state, or `None` when too few remain (a denial takes
/// nothing).
pub fn take(state: QuotaState, cost: u64) -> Option<QuotaState> {
    state
        .remaining
        .checked_sub(cost)
        .map(|remaining| QuotaState { remaining, ..state })
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    fn ts(t: OffsetDateTime) -> i64 {
        t.unix_timestamp()
    }

    #[test]
    fn daily_refills_at_utc_midnight_once() {
        let r = Some(Refill {
            interval: Interval::Daily,
            amount: 10,
        });
        let s = QuotaState {
            remaining: 0,
            refilled_at: ts(datetime!(2026-11-23 00:00 UTC)),
        };
        assert_eq!(current(s, r, ts(datetime!(2026-11-23 23:59:59 UTC))), s);
        let next = current(s, r, ts(datetime!(2026-11-24 00:00 UTC)));
        assert_eq!(next.remaining, 10);
        assert_eq!(next.refilled_at, ts(datetime!(2026-11-24 00:00 UTC)));
        let used = take(next, 10).unwrap();
        assert_eq!(current(used, r, ts(datetime!(2026-11-24 12:00 UTC))), used);
        assert_eq!(take(used, 1), None);
        // Idle for three days: one refill, not three.
        assert_eq!(
            current(used, r, ts(datetime!(2026-11-27 08:00 UTC))).remaining,
            10
        );
    }

    #[test]
    fn monthly_refills_on_its_day_or_the_months_last() {
        let i = Interval::Monthly { day: 31 };
        assert_eq!(
            i.last_boundary(ts(datetime!(2026-02-28 00:00 UTC))),
            ts(datetime!(2026-02-28 00:00 UTC))
        );
        assert_eq!(
            i.last_boundary(ts(datetime!(2026-02-27 23:59:59 UTC))),
            ts(datetime!(2026-01-31 00:00 UTC))
        );
        assert_eq!(
            i.next_boundary(ts(datetime!(2026-12-31 00:00 UTC))),
            ts(datetime!(2027-01-31 00:00 UTC))
        );
        let i = Interval::Monthly { day: 1 };
        assert_eq!(
            i.last_boundary(ts(datetime!(2026-01-15 10:00 UTC))),
            ts(datetime!(2026-01-01 00:00 UTC))
        );
        assert_eq!(
            i.next_boundary(ts(datetime!(2026-01-01 00:00 UTC))),
            ts(datetime!(2026-02-01 00:00 UTC))
        );
        assert_eq!(
            Interval::Monthly { day: 15 }.last_boundary(ts(datetime!(2026-01-10 00:00 UTC))),
            ts(datetime!(2025-12-15 00:00 UTC))
        );
    }
}
