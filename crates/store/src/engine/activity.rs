//! Usage: counting verifications (per minute, rolled up into hours and days), quota use,
//! series and totals read back, and anomaly alerts.
//!
//! Part of the engine directory, compiled once per engine (see `mod.rs`).

use std::collections::BTreeMap;

use sqlx::Row as _;

use super::audit::insert_event;
use super::rows::{DbRow, json_text, thresholds_from};
use super::{Db, Engine, dialect};
use crate::activity::{
    Alert, AlertFloor, Granularity, KeyUsageTotal, MinuteActivity, UsageRow, UsageTarget,
};
use crate::error::StoreError;
use crate::model::{
    QuotaTarget, QuotaUse, ROOT_KEYSPACE_ID, Timestamp, UsageBatch, UsageCount, from_unix, to_unix,
};

/// `SUM` of a BIGINT is NUMERIC on PostgreSQL; cast back so both engines give an i64.
fn sum(expr: &str) -> String {
    format!("CAST(COALESCE(SUM({expr}), 0) AS BIGINT)")
}

fn count(row: &DbRow, column: &str) -> Result<u64, StoreError> {
    Ok(u64::try_from(row.try_get::<i64, _>(column)?).unwrap_or(0))
}

pub(super) async fn usage_series(
    store: &Engine,
    target: UsageTarget<'_>,
    granularity: Granularity,
    from: i64,
    to: i64,
) -> Result<Vec<UsageRow>, StoreError> {
    let (table, column) = granularity.table();
    let (join, filter, id) = match target {
        UsageTarget::Key(id) => ("", "u.key_id = $1", id),
        UsageTarget::Owner(id) => ("JOIN keys k ON k.key_id = u.key_id", "k.owner_id = $1", id),
        UsageTarget::Keyspace(id) => (
            "JOIN keys k ON k.key_id = u.key_id",
            "k.keyspace_id = $1",
            id,
        ),
    };
    let sql = format!(
        "SELECT u.{column} AS bucket, u.outcome, {total} AS count FROM {table} u {join} \
         WHERE {filter} AND u.{column} >= $2 AND u.{column} < $3 \
         GROUP BY u.{column}, u.outcome ORDER BY u.{column}, u.outcome",
        total = sum("u.count"),
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .bind(from)
        .bind(to)
        .fetch_all(store.reads())
        .await?;
    rows.iter()
        .map(|row| {
            Ok(UsageRow {
                bucket: row.try_get("bucket")?,
                outcome: row.try_get("outcome")?,
                count: count(row, "count")?,
            })
        })
        .collect()
}

pub(super) async fn usage_totals(
    store: &Engine,
    key_ids: &[String],
    granularity: Granularity,
    from: i64,
    to: i64,
) -> Result<Vec<KeyUsageTotal>, StoreError> {
    if key_ids.is_empty() {
        return Ok(Vec::new());
    }
    let (table, column) = granularity.table();
    let sql = format!(
        "SELECT key_id, outcome, {total} AS count FROM {table} \
         WHERE key_id IN {ids} AND {column} >= $2 AND {column} < $3 \
         GROUP BY key_id, outcome ORDER BY key_id, outcome",
        total = sum("count"),
        ids = dialect::json_list("$1"),
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(json_text(key_ids)?)
        .bind(from)
        .bind(to)
        .fetch_all(store.reads())
        .await?;
    rows.iter()
        .map(|row| {
            Ok(KeyUsageTotal {
                key_id: row.try_get("key_id")?,
                outcome: row.try_get("outcome")?,
                count: count(row, "count")?,
            })
        })
        .collect()
}

pub(super) async fn purge_usage(
    store: &Engine,
    granularity: Granularity,
    before: i64,
) -> Result<u64, StoreError> {
    let (table, column) = granularity.table();
    let sql = format!("DELETE FROM {table} WHERE {column} < $1");
    let done = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(before)
        .execute(store.writes())
        .await?;
    Ok(done.rows_affected())
}

pub(super) async fn minute_activity(
    store: &Engine,
    after: i64,
    through: i64,
    floor: AlertFloor,
) -> Result<Vec<MinuteActivity>, StoreError> {
    let total = sum("u.count");
    let failed = sum("CASE WHEN u.outcome = 'WRONG_SECRET' THEN u.count ELSE 0 END");
    let dead = sum("CASE WHEN u.outcome IN ('REVOKED', 'EXPIRED') THEN u.count ELSE 0 END");
    let limited =
        sum("CASE WHEN u.outcome IN ('RATE_LIMITED', 'USAGE_EXCEEDED') THEN u.count ELSE 0 END");
    let sql = format!(
        "SELECT u.key_id, k.keyspace_id, k.created_at AS key_created_at, \
         s.alert_spike_factor, s.alert_spike_min_per_minute, s.alert_failed_per_minute, \
         u.minute, {total} AS total, {failed} AS failed, {dead} AS dead, \
         {limited} AS limited \
         FROM usage_minutely u JOIN keys k ON k.key_id = u.key_id \
         JOIN keyspaces s ON s.id = k.keyspace_id \
         WHERE u.minute > $1 AND u.minute <= $2 AND k.keyspace_id <> '{ROOT_KEYSPACE_ID}' \
         GROUP BY u.key_id, u.minute, k.keyspace_id, k.created_at, s.alert_spike_factor, \
         s.alert_spike_min_per_minute, s.alert_failed_per_minute \
         HAVING {total} >= COALESCE(s.alert_spike_min_per_minute, $3) \
         OR {failed} >= COALESCE(s.alert_failed_per_minute, $4) \
         OR {dead} > 0 OR {limited} > 0 \
         ORDER BY u.minute, u.key_id",
    );
    let bound = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(after)
        .bind(through)
        .bind(bound(floor.spike_min_per_minute))
        .bind(bound(floor.failed_per_minute))
        .fetch_all(store.reads())
        .await?;
    rows.iter()
        .map(|row| {
            Ok(MinuteActivity {
                key_id: row.try_get("key_id")?,
                keyspace_id: row.try_get("keyspace_id")?,
                key_created_at: from_unix(row.try_get("key_created_at")?),
                thresholds: thresholds_from(row)?,
                minute: row.try_get("minute")?,
                total: count(row, "total")?,
                failed: count(row, "failed")?,
                dead_key_uses: count(row, "dead")?,
                limited: count(row, "limited")?,
            })
        })
        .collect()
}

pub(super) async fn usage_sum(
    store: &Engine,
    key_id: &str,
    from: i64,
    to: i64,
) -> Result<u64, StoreError> {
    let sql = format!(
        "SELECT {total} AS total FROM usage_minutely \
         WHERE key_id = $1 AND minute >= $2 AND minute < $3",
        total = sum("count"),
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(key_id)
        .bind(from)
        .bind(to)
        .fetch_one(store.reads())
        .await?;
    count(&row, "total")
}

pub(super) async fn record_alert(
    store: &Engine,
    alert: &Alert,
    quiet: i64,
    now: Timestamp,
) -> Result<bool, StoreError> {
    let mut tx = store.begin().await?;
    // The row exists before it is locked, so two nodes judging the same minute queue
    // on the lock instead of both starting an episode.
    sqlx::query(
        "INSERT INTO alert_episodes (key_id, kind, started_at, last_seen_at) \
         VALUES ($1, $2, $3, -1) ON CONFLICT (key_id, kind) DO NOTHING",
    )
    .bind(&alert.key_id)
    .bind(alert.kind)
    .bind(alert.minute)
    .execute(&mut *tx)
    .await?;
    let sql = format!(
        "SELECT last_seen_at FROM alert_episodes WHERE key_id = $1 AND kind = $2{}",
        dialect::FOR_UPDATE
    );
    let last_seen: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .bind(&alert.key_id)
        .bind(alert.kind)
        .fetch_one(&mut *tx)
        .await?;
    let goes_on = last_seen >= 0 && last_seen >= alert.minute - quiet;
    let started = if goes_on {
        let sql = format!(
            "UPDATE alert_episodes SET last_seen_at = {}(last_seen_at, $3) \
             WHERE key_id = $1 AND kind = $2",
            dialect::GREATEST
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(&alert.key_id)
            .bind(alert.kind)
            .bind(alert.minute)
            .execute(&mut *tx)
            .await?;
        false
    } else {
        sqlx::query(
            "UPDATE alert_episodes SET started_at = $3, last_seen_at = $3 \
             WHERE key_id = $1 AND kind = $2",
        )
        .bind(&alert.key_id)
        .bind(alert.kind)
        .bind(alert.minute)
        .execute(&mut *tx)
        .await?;
        let dedup = format!(
            "{}:{}:{}:{}",
            alert.event_type, alert.kind, alert.key_id, alert.minute
        );
        insert_event(
            &mut tx,
            alert.event_type,
            Some(&alert.key_id),
            Some(&alert.keyspace_id),
            &alert.data,
            &dedup,
            now,
        )
        .await?
    };
    tx.commit().await?;
    if started {
        crate::counters::events_written(alert.event_type, 1);
    }
    Ok(started)
}

/// Rows per multi-row usage statement (four parameters each: far below either engine's
/// limit on bound parameters).
const USAGE_ROWS: usize = 500;

pub(super) async fn record_usage(store: &Engine, batch: &UsageBatch) -> Result<(), StoreError> {
    if batch.is_empty() {
        return Ok(());
    }
    // Rows are written in key order, duplicates merged: nodes flushing at the same
    // time then lock rows in the same order and never deadlock (PostgreSQL; a
    // multi-row INSERT takes its rows in list order, the keys' rows are locked first,
    // see `LOCK_KEYS_IN_ORDER`), and no statement names one row twice.
    let mut counts: BTreeMap<(&str, i64, &str), u64> = BTreeMap::new();
    for c in &batch.counts {
        let n = counts.entry((&c.key_id, c.minute, &c.outcome)).or_default();
        *n = n.saturating_add(c.count);
    }
    let mut last_used: BTreeMap<&str, i64> = BTreeMap::new();
    for (key_id, at) in &batch.last_used {
        let t = last_used.entry(key_id).or_insert(i64::MIN);
        *t = (*t).max(to_unix(*at));
    }
    let mut tx = store.begin().await?;
    // Minutes, and their roll-ups into hours and days, in one transaction: the three
    // tables always agree.
    for granularity in Granularity::ALL {
        let mut rolled: BTreeMap<(&str, i64, &str), u64> = BTreeMap::new();
        for (&(key_id, minute, outcome), &count) in &counts {
            let n = rolled
                .entry((key_id, granularity.floor(minute), outcome))
                .or_default();
            *n = n.saturating_add(count);
        }
        let (table, column) = granularity.table();
        let rows: Vec<_> = rolled.into_iter().collect();
        for chunk in rows.chunks(USAGE_ROWS) {
            let mut q = sqlx::QueryBuilder::<Db>::new(format!(
                "INSERT INTO {table} (key_id, {column}, outcome, count) "
            ));
            q.push_values(chunk, |mut row, &((key_id, bucket, outcome), count)| {
                row.push_bind(key_id)
                    .push_bind(bucket)
                    .push_bind(outcome)
                    .push_bind(i64::try_from(count).unwrap_or(i64::MAX));
            });
            q.push(format!(
                " ON CONFLICT (key_id, {column}, outcome) \
                 DO UPDATE SET count = {table}.count + excluded.count"
            ));
            q.build().execute(&mut *tx).await?;
        }
    }
    let last_used: Vec<_> = last_used.into_iter().collect();
    for chunk in last_used.chunks(USAGE_ROWS) {
        if let Some(lock) = dialect::LOCK_KEYS_IN_ORDER {
            let ids: Vec<&str> = chunk.iter().map(|&(key_id, _)| key_id).collect();
            let sql = format!(
                "SELECT key_id FROM keys WHERE key_id IN {}{lock}",
                dialect::json_list("$1")
            );
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(json_text(&ids)?)
                .fetch_all(&mut *tx)
                .await?;
        }
        let mut q = sqlx::QueryBuilder::<Db>::new("WITH used (key_id, at) AS (");
        q.push_values(chunk, |mut row, &(key_id, at)| {
            row.push_bind(key_id).push_bind(at);
        });
        q.push(format!(
            ") UPDATE keys SET last_used_at = {}(COALESCE(keys.last_used_at, 0), used.at) \
             FROM used WHERE keys.key_id = used.key_id",
            dialect::GREATEST
        ));
        q.build().execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(())
}

pub(super) async fn record_quota_use(store: &Engine, uses: &[QuotaUse]) -> Result<(), StoreError> {
    let greatest = dialect::GREATEST;
    // In a fixed order, so concurrent writers never deadlock (PostgreSQL).
    let mut uses: Vec<&QuotaUse> = uses.iter().collect();
    uses.sort_by(|a, b| a.target.cmp(&b.target));
    let mut tx = store.begin().await?;
    for u in uses {
        let (table, column, id) = match &u.target {
            QuotaTarget::Key(id) => ("keys", "key_id", id),
            QuotaTarget::Owner(id) => ("owners", "id", id),
        };
        let used = u.used;
        let mut refilled = false;
        if let Some((at, amount)) = u.refilled {
            // Another writer may have refilled for this boundary (or a later one)
            // already: then only the uses are subtracted.
            let sql = format!(
                "UPDATE {table} SET quota_remaining = {greatest}($1 - $2, 0), quota_refilled_at = $3 \
                 WHERE {column} = $4 AND quota_remaining IS NOT NULL \
                 AND COALESCE(quota_refilled_at, 0) < $3"
            );
            let done = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(i64::try_from(amount).unwrap_or(i64::MAX))
                .bind(used)
                .bind(to_unix(at))
                .bind(id)
                .execute(&mut *tx)
                .await?;
            refilled = done.rows_affected() > 0;
        }
        if !refilled && used != 0 {
            let sql = format!(
                "UPDATE {table} SET quota_remaining = {greatest}(quota_remaining - $1, 0) \
                 WHERE {column} = $2 AND quota_remaining IS NOT NULL"
            );
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(used)
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
    }
    tx.commit().await?;
    Ok(())
}

pub(super) async fn usage(
    store: &Engine,
    key_id: &str,
    since: i64,
) -> Result<Vec<UsageCount>, StoreError> {
    let rows = sqlx::query(
        "SELECT key_id, minute, outcome, count FROM usage_minutely \
         WHERE key_id = $1 AND minute >= $2 ORDER BY minute, outcome",
    )
    .bind(key_id)
    .bind(since)
    .fetch_all(store.reads())
    .await?;
    rows.iter()
        .map(|row| {
            Ok(UsageCount {
                key_id: row.try_get("key_id")?,
                minute: row.try_get("minute")?,
                outcome: row.try_get("outcome")?,
                count: u64::try_from(row.try_get::<i64, _>("count")?).unwrap_or(0),
            })
        })
        .collect()
}
