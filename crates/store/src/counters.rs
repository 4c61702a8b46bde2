//! Prometheus counters of what the store committed: audit events by action and events by
//! type (`/metrics` shows them). Labels are fixed names, never ids or values.

pub const AUDIT_EVENTS: &str = "keyhaven_audit_events_total";
pub const EVENTS: &str = "keyhaven_events_total";

pub(crate) fn audit_written(action: &str) {
    metrics::counter!(AUDIT_EVENTS, "action" => action.to_owned()).increment(1);
}

pub(crate) fn events_written(kind: &str, n: u64) {
    if n > 0 {
        metrics::counter!(EVENTS, "type" => kind.to_owned()).increment(n);
    }
}
