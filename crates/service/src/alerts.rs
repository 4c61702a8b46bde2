//! Anomaly alerts, judged from the flushed per-minute usage counters (never on the
//! verify path): once a minute has closed and every node has had time to flush it, each
//! key active in it is checked for
//! - a rate far above its own baseline (`usage.anomaly`, kind `rate_spike`);
//! - a burst of wrong secrets for its id (`usage.anomaly`, kind `failed_verifications`);
//! - any use of it while revoked or expired (`verify.revoked_key_used`);
//! - calls refused by its rate limits or quota (`ratelimit.exceeded`).
//!
//! Each produces one event per episode: the store keeps, per key and kind, when the
//! condition was last seen, and an episode ends after `alert_quiet_minutes` without it.
//! Several nodes may judge the same minute; the episode row serializes them. Root keys
//! are not judged: their volume follows the API's own traffic.

use std::sync::Mutex;

use keyhaven_core::anomaly::SpikeRule;
use keyhaven_store::{Alert, MinuteActivity, StoreError, Timestamp};
use serde_json::{Map, Value, json};

use keyhaven_store::Store;

use crate::config::Config;
use crate::validate::rfc3339;

/// After a restart, how many closed minutes are judged (again: judging is idempotent).
const CATCH_UP_MINUTES: i64 = 5;
/// The most minutes judged in one pass (a clock jump does not mean a day of work).
const MAX_BACKLOG_MINUTES: i64 = 60;

/// Remembers how far this node has judged.
#[derive(Debug, Default)]
pub struct AlertJudge {
    judged_through: Mutex<Option<i64>>,
}

impl AlertJudge {
    /// Judges every minute that closed by `now` since the last call (this node's counts
    /// up to `now` must be flushed). Returns how many episodes started (events stored).
    pub async fn run(
        &self,
        store: &dyn Store,
        config: &Config,
        now: Timestamp,
    ) -> Result<u64, StoreError> {
        // A minute is judged once its end is two flush intervals (at least 2 s) past:
        // by then every node has written its counts for it.
        let flush_secs = config.usage_flush_interval().as_secs_f64().ceil() as i64;
        let grace = (2 * flush_secs).max(2);
        let through = minute(now.unix_timestamp() - grace) - 60;
        let last = *self.lock();
        let after = last
            .unwrap_or(through - CATCH_UP_MINUTES * 60)
            .max(through - MAX_BACKLOG_MINUTES * 60);
        if through <= after {
            return Ok(0);
        }
        let floor = keyhaven_store::AlertFloor {
            spike_min_per_minute: config.alert_spike_min_per_minute,
            failed_per_minute: config.alert_failed_per_minute,
        };
        let activity = store.minute_activity(after, through, floor).await?;
        let quiet =
            i64::try_from(config.alert_quiet_minutes.saturating_mul(60)).unwrap_or(i64::MAX);
        let mut started = 0;
        for a in &activity {
            for alert in alerts(store, config, a).await? {
                if store.record_alert(&alert, quiet, now).await? {
                    tracing::info!(
                        key_id = alert.key_id,
                        kind = alert.kind,
                        event = alert.event_type,
                        "alert"
                    );
                    started += 1;
                }
            }
        }
        *self.lock() = Some(through);
        Ok(started)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<i64>> {
        self.judged_through
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// What one key's minute shows.
async fn alerts(
    store: &dyn Store,
    config: &Config,
    a: &MinuteActivity,
) -> Result<Vec<Alert>, StoreError> {
    let mut alerts = Vec::new();
    let alert = |kind, event_type, data: Value| Alert {
        key_id: a.key_id.clone(),
        keyspace_id: a.keyspace_id.clone(),
        kind,
        event_type,
        minute: a.minute,
        data: payload(a, kind, data),
    };
    let rule = SpikeRule {
        factor: a
            .thresholds
            .spike_factor
            .unwrap_or(config.alert_spike_factor),
        min_per_minute: a
            .thresholds
            .spike_min_per_minute
            .unwrap_or(config.alert_spike_min_per_minute),
        window_minutes: config.alert_baseline_minutes,
    };
    let window = i64::try_from(rule.window_minutes * 60).unwrap_or(i64::MAX);
    // Only keys with a whole baseline window behind them; cheap checks first, the
    // baseline query only for a minute that could be a spike.
    if a.total >= rule.min_per_minute && a.key_created_at.unix_timestamp() <= a.minute - window {
        let before = store
            .usage_sum(&a.key_id, a.minute - window, a.minute)
            .await?;
        if rule.is_spike(a.total, before) {
            alerts.push(alert(
                "rate_spike",
                "usage.anomaly",
                json!({
                    "count": a.total,
                    "baseline_per_minute": (rule.baseline(before) * 100.0).round() / 100.0,
                    "factor": rule.factor,
                }),
            ));
        }
    }
    let failed = a
        .thresholds
        .failed_per_minute
        .unwrap_or(config.alert_failed_per_minute);
    if a.failed >= failed {
        alerts.push(alert(
            "failed_verifications",
            "usage.anomaly",
            json!({ "count": a.failed, "threshold": failed }),
        ));
    }
    if a.dead_key_uses > 0 {
        alerts.push(alert(
            "revoked_key_used",
            "verify.revoked_key_used",
            json!({ "count": a.dead_key_uses }),
        ));
    }
    if a.limited > 0 {
        alerts.push(alert(
            "ratelimit_exceeded",
            "ratelimit.exceeded",
            json!({ "count": a.limited }),
        ));
    }
    Ok(alerts)
}

fn minute(unix: i64) -> i64 {
    unix - unix.rem_euclid(60)
}

fn payload(a: &MinuteActivity, kind: &str, details: Value) -> Map<String, Value> {
    let mut data = Map::new();
    data.insert("key_id".into(), json!(a.key_id));
    data.insert("keyspace_id".into(), json!(a.keyspace_id));
    data.insert("kind".into(), json!(kind));
    data.insert(
        "minute".into(),
        json!(rfc3339(keyhaven_store::from_unix(a.minute))),
    );
    data.insert("total".into(), json!(a.total));
    if let Value::Object(details) = details {
        data.extend(details);
    }
    data
}
