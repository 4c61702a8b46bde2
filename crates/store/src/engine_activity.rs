//! Usage series and totals, and anomaly alerts: part of `engine.rs` (compiled once per
//! engine, as it is), called from its `impl Store`.

use super::*;

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
) -> Result<Vec<MinuteActivity>, StoreError> {
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
         ORDER BY u.minute, u.key_id",
        total = sum("u.count"),
        failed = sum("CASE WHEN u.outcome = 'WRONG_SECRET' THEN u.count ELSE 0 END"),
        dead = sum("CASE WHEN u.outcome IN ('REVOKED', 'EXPIRED') THEN u.count ELSE 0 END"),
        limited = sum(
            "CASE WHEN u.outcome IN ('RATE_LIMITED', 'USAGE_EXCEEDED') THEN u.count ELSE 0 END"
        ),
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(after)
        .bind(through)
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
